//! A Sigma rule's detection as one condition ([`Cond`]) over its table's columns.
//!
//! Matching is Sigma's: strings compare without regard to case unless `|cased`; `*` and `?` are
//! wildcards (`\*`, `\?` and `\\` are the characters); a list of values matches if any does
//! (`|all`: if every one does); the items of a map must all match. A field that is null (absent, or
//! empty: the lake keeps empty values as nulls) matches only `null` and `|exists: false`, and every
//! comparison with it is false, never unknown, so `not` reads as Sigma means it. A Sysmon field
//! the log source's events never carry (`CommandLine` in a `network_connection` rule) is such a
//! null in every row ([`Logsource::lacks`]); a field no log source has is refused.

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Detections, Modifier, Quantifier, SelectorPattern,
    SigmaValue,
};

use super::Unsupported;
pub use super::cond::quote;
use super::cond::{Cond, How, Op};
use super::fields::{Column, Kind, Logsource};
use super::values::{self, Pattern, Piece};

/// The condition of a rule's detection over `source`'s table.
pub fn condition(detections: &Detections, source: Logsource) -> Result<Cond, Unsupported> {
    if detections.conditions.is_empty() {
        return Err(Unsupported::Condition("no condition".into()));
    }
    let parts = detections
        .conditions
        .iter()
        .map(|c| expr(c, &detections.named, source))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(or(parts))
}

/// Every part; one part alone as it is.
fn and(mut parts: Vec<Cond>) -> Cond {
    if parts.len() == 1 { parts.pop().expect("one") } else { Cond::And(parts) }
}

/// Any part; one part alone as it is.
fn or(mut parts: Vec<Cond>) -> Cond {
    if parts.len() == 1 { parts.pop().expect("one") } else { Cond::Or(parts) }
}

fn expr(
    c: &ConditionExpr,
    named: &std::collections::HashMap<String, Detection>,
    source: Logsource,
) -> Result<Cond, Unsupported> {
    Ok(match c {
        ConditionExpr::And(xs) => and(
            xs.iter()
                .map(|x| expr(x, named, source))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Or(xs) => or(
            xs.iter()
                .map(|x| expr(x, named, source))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Not(x) => Cond::Not(Box::new(expr(x, named, source)?)),
        ConditionExpr::Identifier(id) => {
            let d = named
                .get(id)
                .ok_or_else(|| Unsupported::Condition(format!("no detection named {id:?}")))?;
            detection(d, source)?
        }
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let mut names: Vec<&String> = named
                .keys()
                .filter(|n| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => glob_matches(p, n),
                })
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(Unsupported::Condition(format!(
                    "{quantifier} of {pattern}: no detection matches"
                )));
            }
            let each = names
                .iter()
                .map(|n| detection(&named[*n], source))
                .collect::<Result<Vec<_>, _>>()?;
            match quantifier {
                Quantifier::Any => or(each),
                Quantifier::All => and(each),
                Quantifier::Count(n) => Cond::AtLeast(*n, each),
            }
        }
    })
}

/// A selector's `*` (any run) and `?` (one character) against a detection's name.
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    go(&p, &n)
}

fn detection(d: &Detection, source: Logsource) -> Result<Cond, Unsupported> {
    Ok(match d {
        Detection::AllOf(items) => {
            if items.is_empty() {
                return Err(Unsupported::Condition("an empty detection".into()));
            }
            and(
                items
                    .iter()
                    .map(|i| item(i, source))
                    .collect::<Result<_, _>>()?,
            )
        }
        Detection::AnyOf(ds) => {
            if ds.is_empty() {
                return Err(Unsupported::Condition("an empty list of detections".into()));
            }
            or(
                ds.iter()
                    .map(|x| detection(x, source))
                    .collect::<Result<_, _>>()?,
            )
        }
        Detection::And(ds) => and(
            ds.iter()
                .map(|x| detection(x, source))
                .collect::<Result<_, _>>()?,
        ),
        Detection::Conditional { named, condition } => expr(condition, named, source)?,
        Detection::Keywords(_) => return Err(Unsupported::Keywords),
        Detection::ArrayMatch { field, .. } => {
            return Err(Unsupported::Modifier(format!("array matching on {field}")));
        }
    })
}

/// Modifiers that change how values are matched, not what they are.
const SUPPORTED: [Modifier; 20] = [
    Modifier::Contains,
    Modifier::StartsWith,
    Modifier::EndsWith,
    Modifier::All,
    Modifier::Base64,
    Modifier::Base64Offset,
    Modifier::Wide,
    Modifier::Utf16be,
    Modifier::Utf16,
    Modifier::WindAsh,
    Modifier::Re,
    Modifier::Cidr,
    Modifier::Cased,
    Modifier::Exists,
    Modifier::FieldRef,
    Modifier::Gt,
    Modifier::Gte,
    Modifier::Lt,
    Modifier::Lte,
    Modifier::Neq,
];

fn item(it: &DetectionItem, source: Logsource) -> Result<Cond, Unsupported> {
    let mods = &it.field.modifiers;
    let has = |m: Modifier| mods.contains(&m);
    if let Some(m) = mods.iter().find(|m| {
        !SUPPORTED.contains(m)
            && !matches!(
                m,
                Modifier::IgnoreCase | Modifier::Multiline | Modifier::DotAll
            )
    }) {
        return Err(Unsupported::Modifier(values::name(*m)));
    }
    let Some(field) = it.field.name.as_deref() else {
        return Err(Unsupported::Keywords);
    };
    if it.values.is_empty() {
        return Err(Unsupported::Value(format!("{field}: no value")));
    }
    if source.lacks(field) {
        return absent(it, field);
    }
    let col = source.column(field).ok_or_else(|| Unsupported::Field {
        field: field.to_string(),
        source,
    })?;
    if has(Modifier::Exists) {
        let [SigmaValue::Bool(b)] = it.values.as_slice() else {
            return Err(Unsupported::Value(format!(
                "{field}|exists takes true or false"
            )));
        };
        return Ok(Cond::Null(col, !*b));
    }
    let each = it
        .values
        .iter()
        .map(|v| value(&col, mods, v, source))
        .collect::<Result<Vec<_>, _>>()?;
    let linked = if has(Modifier::All) { and(each) } else { or(each) };
    Ok(if has(Modifier::Neq) {
        Cond::Neq(col, Box::new(linked))
    } else {
        linked
    })
}

/// An item on a field the log source's events never carry: `null` and `|exists: false` hold, and
/// every other test (a value, `|exists: true`, `|neq`, `|fieldref`) fails.
fn absent(it: &DetectionItem, field: &str) -> Result<Cond, Unsupported> {
    let mods = &it.field.modifiers;
    if mods.contains(&Modifier::Exists) {
        let [SigmaValue::Bool(b)] = it.values.as_slice() else {
            return Err(Unsupported::Value(format!(
                "{field}|exists takes true or false"
            )));
        };
        return Ok(if *b { Cond::never() } else { Cond::True });
    }
    if mods.contains(&Modifier::Neq) {
        return Ok(Cond::never());
    }
    let each = it
        .values
        .iter()
        .map(|v| if matches!(v, SigmaValue::Null) { Cond::True } else { Cond::never() })
        .collect();
    Ok(if mods.contains(&Modifier::All) { and(each) } else { or(each) })
}

fn value(
    col: &Column,
    mods: &[Modifier],
    v: &SigmaValue,
    source: Logsource,
) -> Result<Cond, Unsupported> {
    let has = |m: Modifier| mods.contains(&m);
    if matches!(v, SigmaValue::Null) {
        return Ok(Cond::Null(*col, true));
    }
    if has(Modifier::FieldRef) {
        return fieldref(col, mods, v, source);
    }
    for (m, op) in [
        (Modifier::Gt, Op::Gt),
        (Modifier::Gte, Op::Gte),
        (Modifier::Lt, Op::Lt),
        (Modifier::Lte, Op::Lte),
    ] {
        if has(m) {
            let n = match v {
                SigmaValue::Integer(n) => n.to_string(),
                SigmaValue::Float(f) => f.to_string(),
                SigmaValue::String(s) => s
                    .as_plain()
                    .filter(|t| t.trim().parse::<f64>().is_ok())
                    .ok_or_else(|| {
                    Unsupported::Value(format!("{}: {v} is not a number", values::name(m)))
                })?,
                _ => {
                    return Err(Unsupported::Value(format!(
                        "{}: {v} is not a number",
                        values::name(m)
                    )));
                }
            };
            return Ok(Cond::Compare { col: *col, op, n });
        }
    }
    if has(Modifier::Re) {
        return regex(col, mods, v);
    }
    if has(Modifier::Cidr) {
        let SigmaValue::String(s) = v else {
            return Err(Unsupported::Value(format!("cidr: {v} is not a network")));
        };
        let net = s.original.trim();
        crate::engine::functions::parse_cidr(net)
            .map_err(|e| Unsupported::Value(format!("cidr {net:?}: {e}")))?;
        return Ok(Cond::Cidr { col: *col, net: net.to_string() });
    }
    // A whole number against a number column: compare as numbers.
    if col.kind == Kind::Int
        && !mods.iter().any(|m| {
            matches!(
                m,
                Modifier::Contains
                    | Modifier::StartsWith
                    | Modifier::EndsWith
                    | Modifier::WindAsh
                    | Modifier::Base64
                    | Modifier::Base64Offset
                    | Modifier::Wide
                    | Modifier::Utf16
                    | Modifier::Utf16be
            )
        })
    {
        let n = match v {
            SigmaValue::Integer(n) => Some(*n),
            SigmaValue::String(s) => s.as_plain().and_then(|t| t.trim().parse::<i64>().ok()),
            _ => None,
        };
        if let Some(n) = n {
            return Ok(Cond::IntEq(*col, n));
        }
    }
    let cased = has(Modifier::Cased);
    let patterns = values::patterns(v, mods)?
        .into_iter()
        .map(|p| if cased { p } else { fold(p) })
        .collect();
    Ok(Cond::Text { col: *col, cased, patterns })
}

/// The pattern with its texts in lower case, as a folded column is compared.
fn fold(p: Pattern) -> Pattern {
    Pattern(
        p.0.into_iter()
            .map(|piece| match piece {
                Piece::Text(t) => Piece::Text(t.to_lowercase()),
                other => other,
            })
            .collect(),
    )
}

/// `|re`: Rust's regular expressions (the engine's), case-sensitive unless `|i`; `|m` and `|s` as
/// their flags. A pattern they cannot run (look-around, back-references) does not compile.
fn regex(col: &Column, mods: &[Modifier], v: &SigmaValue) -> Result<Cond, Unsupported> {
    let SigmaValue::String(s) = v else {
        return Err(Unsupported::Value(format!("re: {v} is not a pattern")));
    };
    let mut flags = String::new();
    for (m, f) in [
        (Modifier::IgnoreCase, 'i'),
        (Modifier::Multiline, 'm'),
        (Modifier::DotAll, 's'),
    ] {
        if mods.contains(&m) {
            flags.push(f);
        }
    }
    let pattern = if flags.is_empty() {
        s.original.clone()
    } else {
        format!("(?{flags}){}", s.original)
    };
    regex::RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| Unsupported::Regex {
            pattern: s.original.clone(),
            reason: regex_reason(&e),
        })?;
    Ok(Cond::Regex { col: *col, pattern })
}

/// The compiled size the engine allows a regular expression (the regex crate's default).
const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// The first line of a regex error that says what is wrong (`look-around … is not supported`).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error:"))
        .map_or(text.clone(), |l| {
            l.trim_start()
                .trim_start_matches("error:")
                .trim()
                .to_string()
        })
}

/// `|fieldref`: the column against another field of the same event.
fn fieldref(
    col: &Column,
    mods: &[Modifier],
    v: &SigmaValue,
    source: Logsource,
) -> Result<Cond, Unsupported> {
    let SigmaValue::String(s) = v else {
        return Err(Unsupported::Value(format!(
            "fieldref: {v} is not a field name"
        )));
    };
    let other_name = s.original.trim();
    if source.lacks(other_name) {
        return Ok(Cond::never());
    }
    let other = source
        .column(other_name)
        .ok_or_else(|| Unsupported::Field {
            field: other_name.to_string(),
            source,
        })?;
    let how = if mods.contains(&Modifier::Contains) {
        How::Contains
    } else if mods.contains(&Modifier::StartsWith) {
        How::StartsWith
    } else if mods.contains(&Modifier::EndsWith) {
        How::EndsWith
    } else {
        How::Equals
    };
    Ok(Cond::FieldRef { col: *col, other, cased: mods.contains(&Modifier::Cased), how })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_globs() {
        assert!(glob_matches("selection_*", "selection_img"));
        assert!(glob_matches("sel?", "sel1"));
        assert!(!glob_matches("filter_*", "selection"));
        assert!(glob_matches("*", "anything"));
    }
}
