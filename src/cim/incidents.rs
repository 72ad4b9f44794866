//! `risk.incidents`: risk objects whose score over 24 hours passed the threshold, or that several
//! MITRE tactics saw (`sql/risk/incidents.sql`), stamped with the run that found them.

crate::table! {
    /// One incident.
    pub struct IncidentRow / IncidentBuilder {
        /// The end of the 24 hours.
        time_us: Ts [super::TIME] not null;
        run_id: Utf8 ["run_id"] not null;
        window_earliest: Ts ["window_earliest"] not null;
        window_latest: Ts ["window_latest"] not null;
        risk_object: Utf8 ["risk_object"];
        risk_object_type: Utf8 ["risk_object_type"];
        risk_score: Int64 ["risk_score"];
        risk_events: Int64 ["risk_events"];
        searches: Int64 ["searches"];
        tactics: Int64 ["tactics"];
        first_time: OptTs ["firstTime"];
        last_time: OptTs ["lastTime"];
    }
}

/// The columns the stamp fills; the rest come from the incident rule's output.
pub const STAMP_COLUMNS: usize = 4;
