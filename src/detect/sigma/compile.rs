//! A Sigma rule's detection as one SQL condition over its table's columns.
//!
//! Matching is Sigma's: strings compare without regard to case unless `|cased`; `*` and `?` are
//! wildcards (`\*`, `\?` and `\\` are the characters); a list of values matches if any does
//! (`|all`: if every one does); the items of a map must all match. A field that is null (absent, or
//! empty: the lake keeps empty values as nulls) matches only `null` and `|exists: false`, and every
//! comparison with it is false, never unknown, so `not` reads as Sigma means it.

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Detections, Modifier, Quantifier, SelectorPattern,
    SigmaValue,
};

use super::Unsupported;
use super::fields::{Column, Kind, Logsource};
use super::values::{self, Pattern, Piece};

/// The SQL condition of a rule's detection over `source`'s table.
pub fn condition(detections: &Detections, source: Logsource) -> Result<String, Unsupported> {
    if detections.conditions.is_empty() {
        return Err(Unsupported::Condition("no condition".into()));
    }
    let parts = detections
        .conditions
        .iter()
        .map(|c| expr(c, &detections.named, source))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(join(parts, "OR"))
}

/// `a OP b OP …`, parenthesised; one operand alone as it is. Long lists nest as a balanced tree
/// (`((a OP b) OP (c OP d))`): a rule with hundreds of values parses and plans a few levels deep,
/// not hundreds (the planner recurses over expressions).
fn join(mut parts: Vec<String>, op: &str) -> String {
    const FLAT: usize = 8;
    match parts.len() {
        1 => parts.pop().expect("one"),
        n if n <= FLAT => format!("({})", parts.join(&format!(" {op} "))),
        n => {
            let right = parts.split_off(n / 2);
            format!("({} {op} {})", join(parts, op), join(right, op))
        }
    }
}

fn expr(
    c: &ConditionExpr,
    named: &std::collections::HashMap<String, Detection>,
    source: Logsource,
) -> Result<String, Unsupported> {
    Ok(match c {
        ConditionExpr::And(xs) => join(
            xs.iter()
                .map(|x| expr(x, named, source))
                .collect::<Result<_, _>>()?,
            "AND",
        ),
        ConditionExpr::Or(xs) => join(
            xs.iter()
                .map(|x| expr(x, named, source))
                .collect::<Result<_, _>>()?,
            "OR",
        ),
        ConditionExpr::Not(x) => format!("(NOT {})", expr(x, named, source)?),
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
                Quantifier::Any => join(each, "OR"),
                Quantifier::All => join(each, "AND"),
                Quantifier::Count(n) => {
                    let sum = each
                        .iter()
                        .map(|e| format!("CASE WHEN {e} THEN 1 ELSE 0 END"))
                        .collect::<Vec<_>>()
                        .join(" + ");
                    format!("(({sum}) >= {n})")
                }
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

fn detection(d: &Detection, source: Logsource) -> Result<String, Unsupported> {
    Ok(match d {
        Detection::AllOf(items) => {
            if items.is_empty() {
                return Err(Unsupported::Condition("an empty detection".into()));
            }
            join(
                items
                    .iter()
                    .map(|i| item(i, source))
                    .collect::<Result<_, _>>()?,
                "AND",
            )
        }
        Detection::AnyOf(ds) => {
            if ds.is_empty() {
                return Err(Unsupported::Condition("an empty list of detections".into()));
            }
            join(
                ds.iter()
                    .map(|x| detection(x, source))
                    .collect::<Result<_, _>>()?,
                "OR",
            )
        }
        Detection::And(ds) => join(
            ds.iter()
                .map(|x| detection(x, source))
                .collect::<Result<_, _>>()?,
            "AND",
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

fn item(it: &DetectionItem, source: Logsource) -> Result<String, Unsupported> {
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
    let col = source.column(field).ok_or_else(|| Unsupported::Field {
        field: field.to_string(),
        source,
    })?;
    if it.values.is_empty() {
        return Err(Unsupported::Value(format!("{field}: no value")));
    }
    if has(Modifier::Exists) {
        let [SigmaValue::Bool(b)] = it.values.as_slice() else {
            return Err(Unsupported::Value(format!(
                "{field}|exists takes true or false"
            )));
        };
        return Ok(format!(
            "({} IS {}NULL)",
            col.name,
            if *b { "NOT " } else { "" }
        ));
    }
    let each = it
        .values
        .iter()
        .map(|v| value(&col, mods, v, source))
        .collect::<Result<Vec<_>, _>>()?;
    let linked = join(each, if has(Modifier::All) { "AND" } else { "OR" });
    Ok(if has(Modifier::Neq) {
        format!("({} IS NOT NULL AND NOT {linked})", col.name)
    } else {
        linked
    })
}

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The column as text (numbers and booleans as they print: `443`, `true`).
fn text(col: &Column) -> String {
    match col.kind {
        Kind::Text => col.name.to_string(),
        _ => format!("CAST({} AS VARCHAR)", col.name),
    }
}

fn value(
    col: &Column,
    mods: &[Modifier],
    v: &SigmaValue,
    source: Logsource,
) -> Result<String, Unsupported> {
    let has = |m: Modifier| mods.contains(&m);
    if matches!(v, SigmaValue::Null) {
        return Ok(format!("({} IS NULL)", col.name));
    }
    if has(Modifier::FieldRef) {
        return fieldref(col, mods, v, source);
    }
    for (m, op) in [
        (Modifier::Gt, ">"),
        (Modifier::Gte, ">="),
        (Modifier::Lt, "<"),
        (Modifier::Lte, "<="),
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
            return Ok(match col.kind {
                Kind::Int => format!("({} {op} {n})", col.name),
                _ => format!(
                    "((TRY_CAST({} AS DOUBLE) {op} {n}) IS TRUE)",
                    text(col)
                ),
            });
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
        return Ok(format!(
            "({}({}, {}) IS TRUE)",
            crate::engine::functions::CIDR_MATCH,
            text(col),
            quote(net)
        ));
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
            return Ok(format!("({} IS NOT NULL AND {} = {n})", col.name, col.name));
        }
    }
    let cased = has(Modifier::Cased);
    let subject = if cased {
        text(col)
    } else {
        format!("lower({})", text(col))
    };
    let alternatives: Vec<String> = values::patterns(v, mods)?
        .iter()
        .map(|p| like(&subject, p, cased))
        .collect();
    Ok(format!(
        "({} IS NOT NULL AND {})",
        col.name,
        join(alternatives, "OR")
    ))
}

/// `subject` matched against one pattern, through the fastest form that says it: equality,
/// `starts_with`, `ends_with`, `contains`, else `LIKE`.
fn like(subject: &str, p: &Pattern, cased: bool) -> String {
    let fold = |s: &str| {
        if cased {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    match p.0.as_slice() {
        [] => format!("{subject} = ''"),
        [Piece::Any] => "true".to_string(),
        [Piece::Text(t)] => format!("{subject} = {}", quote(&fold(t))),
        [Piece::Text(t), Piece::Any] => format!("starts_with({subject}, {})", quote(&fold(t))),
        [Piece::Any, Piece::Text(t)] => format!("ends_with({subject}, {})", quote(&fold(t))),
        [Piece::Any, Piece::Text(t), Piece::Any] => {
            format!("contains({subject}, {})", quote(&fold(t)))
        }
        pieces => {
            let mut pat = String::new();
            for piece in pieces {
                match piece {
                    Piece::Any => pat.push('%'),
                    Piece::One => pat.push('_'),
                    Piece::Text(t) => {
                        for c in fold(t).chars() {
                            if matches!(c, '%' | '_' | '\\') {
                                pat.push('\\');
                            }
                            pat.push(c);
                        }
                    }
                }
            }
            format!("{subject} LIKE {}", quote(&pat))
        }
    }
}

/// `|re`: Rust's regular expressions (the engine's), case-sensitive unless `|i`; `|m` and `|s` as
/// their flags. A pattern they cannot run (look-around, back-references) does not compile.
fn regex(col: &Column, mods: &[Modifier], v: &SigmaValue) -> Result<String, Unsupported> {
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
    Ok(format!(
        "({} IS NOT NULL AND {} ~ {})",
        col.name,
        text(col),
        quote(&pattern)
    ))
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
) -> Result<String, Unsupported> {
    let SigmaValue::String(s) = v else {
        return Err(Unsupported::Value(format!(
            "fieldref: {v} is not a field name"
        )));
    };
    let other_name = s.original.trim();
    let other = source
        .column(other_name)
        .ok_or_else(|| Unsupported::Field {
            field: other_name.to_string(),
            source,
        })?;
    let cased = mods.contains(&Modifier::Cased);
    let side = |c: &Column| {
        if cased {
            text(c)
        } else {
            format!("lower({})", text(c))
        }
    };
    let (a, b) = (side(col), side(&other));
    let test = if mods.contains(&Modifier::Contains) {
        format!("contains({a}, {b})")
    } else if mods.contains(&Modifier::StartsWith) {
        format!("starts_with({a}, {b})")
    } else if mods.contains(&Modifier::EndsWith) {
        format!("ends_with({a}, {b})")
    } else {
        format!("{a} = {b}")
    };
    Ok(format!(
        "({} IS NOT NULL AND {} IS NOT NULL AND {test})",
        col.name, other.name
    ))
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
