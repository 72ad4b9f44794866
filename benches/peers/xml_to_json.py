#!/usr/bin/env python3
"""Turns XmlWinEventLog (one `<Event>` per line, as `cimlake gen --format xmlwineventlog` writes it)
into the JSON the peers read, once, outside the timing of benches/peers/compare.py:

- `OUT/evtx/NAME-N.jsonl`: evtx_dump's JSON lines (`{"Event": {"#attributes", "System",
  "EventData"}}`, numbers where EVTX types them), which Zircolite (`-j`) and cimlake read;
- `OUT/array/NAME-N.json`: the same events as one JSON array per file, for Chainsaw (with a copy
  of its mapping saying `kind: json`; its JSON-lines kind is read as JSON), in evtx_dump's
  `--separate-json-attributes` shape (`Provider_attributes`, `TimeCreated_attributes`), with
  `Provider` and `TimeCreated` set to the provider's name and the event's time: the fields
  Chainsaw's mapping reads, which its EVTX reader takes from `Provider_attributes.Name` and
  `TimeCreated_attributes.SystemTime`;
- `OUT/flat/NAME-N.jsonl`: one flat object per event (System and EventData fields side by side,
  `@timestamp`), the Splunk/Elastic export shape that Hayabusa's `-J` reads.

Each input is cut into files of --events events (Chainsaw holds a whole JSON file in memory).

    python3 benches/peers/xml_to_json.py FILE.log... --out DIR [--events 100000]
"""

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET

NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
SYSTEM_INTS = {"EventID", "Version", "Level", "Task", "Opcode", "EventRecordID"}
# Sysmon's typed EventData values (UInt16/UInt32 and Boolean in its manifest), as evtx_dump writes them.
DATA_INTS = {"ProcessId", "ParentProcessId", "SourceProcessId", "TargetProcessId", "SourcePort", "DestinationPort",
             "TerminalSessionId"}
DATA_BOOLS = {"Initiated", "SourceIsIpv6", "DestinationIsIpv6"}


def typed(name, text, ints, bools=()):
    if text is None:
        return None
    if name in ints and text.isdigit():
        return int(text)
    if name in bools and text in ("true", "false"):
        return text == "true"
    return text


def events(f):
    """(line number, text) of each `<Event>…</Event>` in f, which may span lines."""
    buf, start = [], 0
    for number, line in enumerate(f, 1):
        if not buf:
            i = line.find("<Event")
            if i < 0:
                continue
            line, start = line[i:], number
        buf.append(line)
        if "</Event>" in line:
            yield start, "".join(buf)
            buf = []


def convert(text):
    ev = ET.fromstring(text)
    system, data, flat = {}, {}, {}
    sys_el = ev.find(NS + "System")
    if sys_el is None:
        raise ET.ParseError("no System element")
    for el in sys_el:
        name = el.tag[len(NS):]
        if el.attrib:
            attrs = {k: typed(k, v, {"ProcessID", "ThreadID"}) for k, v in el.attrib.items()}
            system[name] = {"#attributes": attrs}
            flat.update(attrs)
        else:
            system[name] = typed(name, el.text, SYSTEM_INTS)
            flat[name] = system[name]
    event_data = ev.find(NS + "EventData")
    for el in event_data if event_data is not None else ():
        name = el.attrib.get("Name")
        if name:
            data[name] = typed(name, el.text if el.text is not None else "", DATA_INTS, DATA_BOOLS)
            flat[name] = data[name]
    flat["@timestamp"] = flat.get("SystemTime")
    doc = {"Event": {"#attributes": {"xmlns": NS[1:-1]}, "System": system, "EventData": data}}
    separate = {}
    for name, value in system.items():
        if isinstance(value, dict):
            separate[name + "_attributes"] = value["#attributes"]
            separate[name] = {"Provider": value["#attributes"].get("Name"),
                              "TimeCreated": value["#attributes"].get("SystemTime")}.get(name, "")
        else:
            separate[name] = value
    chainsaw = {"Event": {"System": separate, "EventData": data}}
    return json.dumps(doc, ensure_ascii=False), json.dumps(chainsaw, ensure_ascii=False), json.dumps(flat, ensure_ascii=False)


class Outputs:
    """The three shapes of one input, cut every `events` events."""

    def __init__(self, out, stem, events):
        self.out, self.stem, self.events, self.part, self.n = out, stem, events, 0, 0
        self.files = None

    def write(self, evtx_doc, chainsaw_doc, flat_doc):
        if self.files is None or self.n == self.events:
            self.close()
            self.part += 1
            name = f"{self.stem}-{self.part:03}"
            self.files = [open(os.path.join(self.out, "evtx", name + ".jsonl"), "w", encoding="utf-8"),
                          open(os.path.join(self.out, "array", name + ".json"), "w", encoding="utf-8"),
                          open(os.path.join(self.out, "flat", name + ".jsonl"), "w", encoding="utf-8")]
            self.files[1].write("[")
            self.n = 0
        evtx, array, flat = self.files
        evtx.write(evtx_doc + "\n")
        array.write(("," if self.n else "") + chainsaw_doc + "\n")
        flat.write(flat_doc + "\n")
        self.n += 1

    def close(self):
        if self.files:
            self.files[1].write("]\n")
            for f in self.files:
                f.close()
        self.files = None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--events", type=int, default=100_000)
    a = p.parse_args()
    for shape in ("evtx", "array", "flat"):
        os.makedirs(os.path.join(a.out, shape), exist_ok=True)
    for path in a.files:
        out = Outputs(a.out, os.path.splitext(os.path.basename(path))[0], a.events)
        n = bad = 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, text in events(f):
                try:
                    docs = convert(text)
                except ET.ParseError as err:
                    bad += 1
                    print(f"{path}:{number}: not an event: {err}", file=sys.stderr)
                    continue
                out.write(*docs)
                n += 1
        out.close()
        print(f"{path}: {n} events, {bad} not converted", file=sys.stderr)


if __name__ == "__main__":
    main()
