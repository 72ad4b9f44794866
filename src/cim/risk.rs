//! `risk.all_risk`: risk events, shaped like Splunk's Risk data model: one event per risk object
//! per result row, with the detection's message rendered, its threat objects and annotations.

crate::table! {
    /// One risk event.
    pub struct RiskRow / RiskBuilder {
        /// The result's `_time` (the window's end when it has none).
        time_us: Ts [super::TIME] not null;
        search_name: Utf8 ["search_name"] not null;
        risk_object: Utf8 ["risk_object" => RISK_OBJECT] not null;
        risk_object_type: Utf8 ["risk_object_type" => RISK_OBJECT_TYPE] not null;
        risk_score: Int64 ["risk_score" => RISK_SCORE] not null;
        risk_message: Utf8 ["risk_message"] not null;
        threat_object: StrList ["threat_object"];
        threat_object_type: StrList ["threat_object_type"];
        mitre_attack: StrList ["annotations.mitre_attack" => MITRE_ATTACK];
        mitre_tactic: StrList ["annotations.mitre_attack.mitre_tactic" => MITRE_TACTIC];
        analytic_story: StrList ["analytic_story"];
        /// The run that wrote it.
        orig_sid: Utf8 ["orig_sid"] not null;
        detection: Utf8 ["detection"] not null;
        mode: Utf8 ["mode"] not null;
        window_earliest: Ts ["window_earliest"] not null;
        window_latest: Ts ["window_latest"] not null;
    }
}
