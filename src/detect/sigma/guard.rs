//! A rule's guard: text that must be in a row for the rule to match it, as clauses that must all
//! hold, each a list of (column, text) of which one must: when a rule matches a row, every clause
//! has a text inside its column's lower-case value. Running many rules ([`super::many`]), one
//! Aho-Corasick pass per column finds every guard text in a row at once, and a rule's condition
//! runs only on the rows its guard lets through: most rules see no row at all.
//!
//! Derived from the rule as [`super::compile`] reads it:
//! * a string match (equals, contains, starts or ends with, wildcards) on a text column: one
//!   clause, the longest literal run of each of its patterns (its ASCII part when `|cased`);
//! * `and`, `all of`, a map's items, `|all`: the clauses of every part that has some;
//! * `or`, `1 of`, a list, a field's values: one clause, the most selective clause of each part
//!   together, and none if one part has none;
//! * `|re`: one clause, the literals every match starts with (or ends with), when there are;
//! * `not`, `null`, `|exists`, `|cidr`, `|fieldref`, comparisons, non-text columns: no guard
//!   (the rule runs on every row).

use std::collections::HashMap;

use rsigma_parser::{ConditionExpr, Detection, DetectionItem, Detections, Modifier, Quantifier, SelectorPattern, SigmaValue};

use super::fields::{Kind, Logsource};
pub use super::info::{Clause, Guard};
use super::values::{self, Piece};


/// The guard of a rule's detection, or `None` when it has none.
pub fn of(detections: &Detections, source: Logsource) -> Option<Guard> {
    let mut parts: Vec<Option<Guard>> = detections.conditions.iter().map(|c| expr(c, &detections.named, source)).collect();
    if parts.len() == 1 { parts.pop().flatten() } else { any(parts) }
}

/// How selective a clause is: its shortest text, then the fewer texts the better.
fn selectivity(c: &Clause) -> (usize, usize) {
    (c.iter().map(|(_, t)| t.len()).min().unwrap_or(0), usize::MAX - c.len())
}

/// Any part's match: one clause, the best clause of every part; none if one part has none.
fn any(parts: Vec<Option<Guard>>) -> Option<Guard> {
    let mut clause = Clause::new();
    for p in parts {
        clause.extend(p?.into_iter().max_by_key(selectivity)?);
    }
    if clause.is_empty() {
        return None;
    }
    clause.sort();
    clause.dedup();
    Some(vec![clause])
}

/// Every part's match: the clauses of every part that has a guard.
fn all(parts: Vec<Option<Guard>>) -> Option<Guard> {
    let mut clauses: Guard = parts.into_iter().flatten().flatten().collect();
    clauses.sort();
    clauses.dedup();
    (!clauses.is_empty()).then_some(clauses)
}

fn expr(c: &ConditionExpr, named: &HashMap<String, Detection>, source: Logsource) -> Option<Guard> {
    match c {
        ConditionExpr::And(xs) => all(xs.iter().map(|x| expr(x, named, source)).collect()),
        ConditionExpr::Or(xs) => any(xs.iter().map(|x| expr(x, named, source)).collect()),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Identifier(id) => detection(named.get(id)?, source),
        ConditionExpr::Selector { quantifier, pattern } => {
            let parts: Vec<Option<Guard>> = named
                .iter()
                .filter(|(n, _)| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => super::compile::glob_matches(p, n),
                })
                .map(|(_, d)| detection(d, source))
                .collect();
            match quantifier {
                Quantifier::All => all(parts),
                // `N of`: any N of them, so any one of them.
                Quantifier::Any | Quantifier::Count(_) => any(parts),
            }
        }
    }
}

fn detection(d: &Detection, source: Logsource) -> Option<Guard> {
    match d {
        Detection::AllOf(items) => all(items.iter().map(|i| item(i, source)).collect()),
        Detection::AnyOf(ds) => any(ds.iter().map(|x| detection(x, source)).collect()),
        Detection::And(ds) => all(ds.iter().map(|x| detection(x, source)).collect()),
        Detection::Conditional { named, condition } => expr(condition, named, source),
        Detection::Keywords(_) | Detection::ArrayMatch { .. } => None,
    }
}

fn item(it: &DetectionItem, source: Logsource) -> Option<Guard> {
    let mods = &it.field.modifiers;
    let unguarded = [Modifier::Exists, Modifier::FieldRef, Modifier::Cidr, Modifier::Gt, Modifier::Gte, Modifier::Lt, Modifier::Lte, Modifier::Neq];
    if mods.iter().any(|m| unguarded.contains(m)) {
        return None;
    }
    let col = source.column(it.field.name.as_deref()?)?;
    if col.kind != Kind::Text {
        return None;
    }
    if mods.contains(&Modifier::Re) {
        let each: Vec<Option<Guard>> = it
            .values
            .iter()
            .map(|v| match v {
                SigmaValue::String(s) => regex_texts(&s.original).map(|texts| vec![texts.into_iter().map(|t| (col.name, t)).collect()]),
                _ => None,
            })
            .collect();
        return if mods.contains(&Modifier::All) { all(each) } else { any(each) };
    }
    let each: Vec<Option<Guard>> = it
        .values
        .iter()
        .map(|v| {
            if matches!(v, SigmaValue::Null) {
                return None;
            }
            let patterns = values::patterns(v, mods).ok()?;
            let cased = mods.contains(&Modifier::Cased);
            any(patterns.iter().map(|p| longest_text(&p.0, cased).map(|t| vec![vec![(col.name, t)]])).collect())
        })
        .collect();
    if mods.contains(&Modifier::All) { all(each) } else { any(each) }
}

/// Texts one of which every match of a regular expression holds: the literals its matches start
/// with, else those they end with (the regex crate's extractor), lower case. `None` when there is
/// no such finite set, or it holds the empty text.
fn regex_texts(pattern: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).ok()?;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let seq = Extractor::new().kind(kind).extract(&hir);
        let Some(literals) = seq.literals() else { continue };
        let mut texts: Vec<String> = literals.iter().filter_map(|l| std::str::from_utf8(l.as_bytes()).ok().map(str::to_lowercase)).collect();
        if texts.len() != literals.len() || texts.is_empty() || texts.iter().any(String::is_empty) {
            continue;
        }
        texts.sort();
        texts.dedup();
        return Some(texts);
    }
    None
}

/// The longest literal run of a pattern, lower case. A case-insensitive pattern is matched as
/// `contains(lower(column), lower(text))`, so its text, lowered the same way, is the guard; a
/// `|cased` one gives the longest ASCII run of its text, whose lower case is in the lowered column
/// whenever the text is in the column.
fn longest_text(pieces: &[Piece], cased: bool) -> Option<String> {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) if !cased => Some(t.to_lowercase()),
            Piece::Text(t) => t.split(|c: char| !c.is_ascii()).max_by_key(|s| s.len()).map(str::to_ascii_lowercase),
            _ => None,
        })
        .filter(|t| !t.is_empty())
        .max_by_key(|t| t.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(yaml_detection: &str) -> Option<Guard> {
        let yaml = format!("title: t\nlogsource:\n  category: process_creation\ndetection:\n{yaml_detection}\n");
        let c = rsigma_parser::parse_sigma_yaml(&yaml).unwrap();
        of(&c.rules[0].detection, Logsource::ProcessCreation)
    }

    #[test]
    fn guards() {
        let g = guard("  img:\n    - Image|endswith: '\\WHOAMI.exe'\n    - OriginalFileName: 'whoami.exe'\n  cli:\n    CommandLine|contains: ' /fo'\n  condition: img and cli");
        assert_eq!(
            g,
            Some(vec![vec![("original_file_name", "whoami.exe".into()), ("process_path", "\\whoami.exe".into())], vec![("process", " /fo".into())]]),
            "both sides of the and"
        );
        let g = guard("  a:\n    CommandLine|contains|all:\n      - 'x'\n      - 'longer'\n  condition: a");
        assert_eq!(g, Some(vec![vec![("process", "longer".into())], vec![("process", "x".into())]]));
        assert_eq!(guard("  a:\n    CommandLine: 'a*bcd*e'\n  condition: a"), Some(vec![vec![("process", "bcd".into())]]));
        assert_eq!(guard("  a:\n    CommandLine|contains: x\n  b:\n    ProcessId|gt: 4\n  condition: a or b"), None, "an or with an unguarded side");
        assert_eq!(guard("  a:\n    CommandLine|contains: x\n  condition: not a"), None);
        assert_eq!(guard("  a:\n    ProcessId: 4\n  condition: a"), None, "a number column");
        assert_eq!(guard("  a:\n    CommandLine|contains: x\n  b:\n    ProcessId|gt: 4\n  condition: a and b"), Some(vec![vec![("process", "x".into())]]));
        // An or of ands: the best clause of each side, together.
        let g = guard("  a:\n    CommandLine|contains: xy\n    Image|endswith: 'longer'\n  b:\n    CommandLine|contains: zz\n  condition: a or b");
        assert_eq!(g, Some(vec![vec![("process", "zz".into()), ("process_path", "longer".into())]]));
        let w = guard("  a:\n    CommandLine|windash|contains: ' -enc'\n  condition: a").unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].len(), 5, "each dash form: {w:?}");
        assert_eq!(guard("  a:\n    CommandLine|contains: 'ÄRGER'\n  condition: a"), Some(vec![vec![("process", "ärger".into())]]), "lowered as the column is");
        assert_eq!(guard("  a:\n    CommandLine|contains|cased: 'ÄRGER'\n  condition: a"), Some(vec![vec![("process", "rger".into())]]), "cased: the ASCII run");
        // A regular expression: what its matches start (or end) with; case variants fold.
        assert_eq!(guard("  a:\n    CommandLine|re: '(?i)echo.*clip'\n  condition: a"), Some(vec![vec![("process", "echo".into())]]));
        assert_eq!(guard("  a:\n    CommandLine|re: '.*\\.(exe|dll)'\n  condition: a"), Some(vec![vec![("process", ".dll".into()), ("process", ".exe".into())]]));
        assert_eq!(guard("  a:\n    CommandLine|re: '.*x?'\n  condition: a"), None, "matches the empty text");
    }
}
