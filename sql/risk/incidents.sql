-- Risk incidents: risk objects whose risk events in the 24 hours before $latest add up to more
-- than $threshold (default 100, `cimlake schedule --risk-threshold`), or span more than one MITRE
-- ATT&CK tactic. The scheduler runs this after each window and writes risk.incidents.
--
-- Parameters: $earliest ($latest minus 24 hours), $latest, $threshold.
WITH events AS (
    SELECT *
    FROM risk.all_risk
    WHERE _time >= $earliest AND _time < $latest
),
scores AS (
    SELECT risk_object, risk_object_type,
           sum(risk_score) AS risk_score,
           count(*) AS risk_events,
           count(DISTINCT search_name) AS searches,
           min(_time) AS "firstTime",
           max(_time) AS "lastTime"
    FROM events
    GROUP BY risk_object, risk_object_type
),
tactics AS (
    SELECT risk_object, risk_object_type, count(DISTINCT tactic) AS tactics
    FROM (
        SELECT risk_object, risk_object_type, unnest("annotations.mitre_attack.mitre_tactic") AS tactic
        FROM events
    ) t
    GROUP BY risk_object, risk_object_type
)
SELECT s.risk_object, s.risk_object_type, s.risk_score, s.risk_events, s.searches,
       coalesce(t.tactics, 0) AS tactics, s."firstTime", s."lastTime"
FROM scores s
LEFT JOIN tactics t ON s.risk_object = t.risk_object AND s.risk_object_type = t.risk_object_type
WHERE s.risk_score > $threshold OR coalesce(t.tactics, 0) > 1
ORDER BY s.risk_score DESC, s.risk_object
