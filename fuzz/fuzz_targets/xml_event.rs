#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cimlake::fuzzing::run("xml_event", data));
