//! One Windows event, from any input shape, to the mapping of its provider: Windows Security
//! events to [`super::security`], everything else to [`super::sysmon`] (which maps Sysmon's and
//! counts the rest as skipped).

use super::xml_event::WinEvent;
use super::{ConvertError, Emitter, security, sysmon};
use crate::cim::provenance::Provenance;

/// Maps one event to rows (or a skip, or a bad record) on `out`.
pub fn convert_event(ev: &WinEvent, prov: Provenance<'_>, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    if security::is_security(ev) {
        security::convert_event(ev, prov, out)
    } else {
        sysmon::convert_event(ev, prov, out)
    }
}
