//! The one-scan evaluator: a rule's [`Cond`] run by cimlake itself on single rows of a scanned
//! batch, with no query to plan per rule. It means what the rule's SQL ([`Cond::to_sql`]) means:
//! Sigma's tests as the engine's functions compute them (`lower`, `starts_with`, `LIKE`, `~`,
//! `cidr_match`, casts of numbers and booleans to text), every test false on a null value.
//!
//! Many rules look at few rows each (the guards of [`super::guard`] pick them), so the tests run
//! row by row, lowering a value only when a rule that folds case reads it.

use std::net::IpAddr;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, LargeStringArray, StringArray, StringViewArray};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::cond::{Cond, How, Op};
use super::values::{Pattern, Piece};
use crate::engine::functions::{Cidr, parse_cidr};

/// A rule's condition, ready to run on the columns of a scanned batch.
#[derive(Debug)]
pub struct Program(Node);

#[derive(Debug)]
enum Node {
    True,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    AtLeast(usize, Vec<Node>),
    Null(usize, bool),
    IntEq(usize, i64),
    /// A number column against a number.
    Number(usize, Op, f64),
    /// Text read as a number against a number.
    TextNumber(usize, Op, f64),
    Text { col: usize, cased: bool, patterns: Vec<Matcher> },
    /// Compiled when first needed: most rules never see a row their guard lets through.
    Regex(usize, String, std::sync::OnceLock<regex::Regex>),
    Cidr(usize, Cidr),
    FieldRef { col: usize, other: usize, cased: bool, how: How },
    Neq(usize, Box<Node>),
}

/// What a program reads of each column of the batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub text: bool,
    pub int: bool,
}

impl Program {
    /// `cond` over a batch whose columns are named `names` (what each program reads of them is
    /// added to `reads`). Networks are parsed here, once; regular expressions are compiled when
    /// first needed.
    pub fn new(cond: &Cond, names: &[String], reads: &mut [Reads]) -> Result<Program, String> {
        Ok(Program(node(cond, names, reads)?))
    }

    /// Whether the condition holds on `row`.
    pub fn matches(&self, cols: &Columns, row: usize, scratch: &mut Scratch) -> bool {
        scratch.clear();
        self.0.holds(cols, row, scratch)
    }
}

/// How a test reads its column: as it is (nulls only), as text, or as numbers.
#[derive(Clone, Copy)]
enum As {
    Is,
    Text,
    Int,
}

fn node(c: &Cond, names: &[String], reads: &mut [Reads]) -> Result<Node, String> {
    let mut at = |name: &str, how: As| -> Result<usize, String> {
        let i = names.iter().position(|n| n == name).ok_or_else(|| format!("the scan has no column {name}"))?;
        match how {
            As::Is => {}
            As::Text => reads[i].text = true,
            As::Int => reads[i].int = true,
        }
        Ok(i)
    };
    let many = |xs: &[Cond], reads: &mut [Reads]| xs.iter().map(|x| node(x, names, reads)).collect::<Result<Vec<_>, _>>();
    let number = |n: &str| n.trim().parse::<f64>().map_err(|_| format!("{n:?} is not a number"));
    Ok(match c {
        Cond::True => Node::True,
        Cond::And(xs) => Node::And(many(xs, reads)?),
        Cond::Or(xs) => Node::Or(many(xs, reads)?),
        Cond::Not(x) => Node::Not(Box::new(node(x, names, reads)?)),
        Cond::AtLeast(n, xs) => Node::AtLeast(usize::try_from(*n).unwrap_or(usize::MAX), many(xs, reads)?),
        Cond::Null(col, is) => Node::Null(at(col.name, As::Is)?, *is),
        Cond::IntEq(col, n) => Node::IntEq(at(col.name, As::Int)?, *n),
        Cond::Compare { col, op, n } => match col.kind {
            super::fields::Kind::Int => Node::Number(at(col.name, As::Int)?, *op, number(n)?),
            _ => Node::TextNumber(at(col.name, As::Text)?, *op, number(n)?),
        },
        Cond::Text { col, cased, patterns } => Node::Text { col: at(col.name, As::Text)?, cased: *cased, patterns: patterns.iter().map(Matcher::new).collect() },
        // The pattern was checked when the rule compiled (`compile::regex`, the same builder).
        Cond::Regex { col, pattern } => Node::Regex(at(col.name, As::Text)?, pattern.clone(), std::sync::OnceLock::new()),
        Cond::Cidr { col, net } => Node::Cidr(at(col.name, As::Text)?, parse_cidr(net)?),
        Cond::FieldRef { col, other, cased, how } => Node::FieldRef { col: at(col.name, As::Text)?, other: at(other.name, As::Text)?, cased: *cased, how: *how },
        Cond::Neq(col, x) => Node::Neq(at(col.name, As::Is)?, Box::new(node(x, names, reads)?)),
    })
}

impl Node {
    fn holds(&self, cols: &Columns, row: usize, scratch: &mut Scratch) -> bool {
        match self {
            Node::True => true,
            Node::And(xs) => xs.iter().all(|x| x.holds(cols, row, scratch)),
            Node::Or(xs) => xs.iter().any(|x| x.holds(cols, row, scratch)),
            Node::Not(x) => !x.holds(cols, row, scratch),
            Node::AtLeast(n, xs) => xs.iter().filter(|x| x.holds(cols, row, scratch)).count() >= *n,
            Node::Null(col, is) => cols.arrays[*col].is_null(row) == *is,
            Node::IntEq(col, n) => cols.int(*col, row) == Some(*n),
            Node::Number(col, op, n) => cols.int(*col, row).is_some_and(|v| op.holds(v as f64, *n)),
            Node::TextNumber(col, op, n) => cols.text(*col, row).and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| op.holds(v, *n)),
            Node::Text { col, cased, patterns } => {
                let value = if *cased { cols.text(*col, row) } else { scratch.lowered(cols, *col, row) };
                value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
            }
            Node::Regex(col, pattern, re) => cols.text(*col, row).is_some_and(|v| re.get_or_init(|| regex::Regex::new(pattern).expect("checked when the rule compiled")).is_match(v)),
            Node::Cidr(col, net) => cols.text(*col, row).and_then(|v| v.trim().parse::<IpAddr>().ok()).is_some_and(|ip| net.contains(ip)),
            Node::FieldRef { col, other, cased, how } => {
                let (a, b) = if *cased {
                    (cols.text(*col, row).map(str::to_string), cols.text(*other, row).map(str::to_string))
                } else {
                    (scratch.lowered(cols, *col, row).map(str::to_string), scratch.lowered(cols, *other, row).map(str::to_string))
                };
                let (Some(a), Some(b)) = (a, b) else { return false };
                match how {
                    How::Equals => a == b,
                    How::Contains => a.contains(&b),
                    How::StartsWith => a.starts_with(&b),
                    How::EndsWith => a.ends_with(&b),
                }
            }
            Node::Neq(col, x) => !cols.arrays[*col].is_null(row) && !x.holds(cols, row, scratch),
        }
    }
}

/// One pattern, in the form that tests it fastest: a substring search is built once.
#[derive(Debug)]
enum Matcher {
    Contains(Box<memchr::memmem::Finder<'static>>),
    Other(Pattern),
}

impl Matcher {
    fn new(p: &Pattern) -> Matcher {
        match p.0.as_slice() {
            [Piece::Any, Piece::Text(t), Piece::Any] => Matcher::Contains(Box::new(memchr::memmem::Finder::new(t.as_bytes()).into_owned())),
            _ => Matcher::Other(p.clone()),
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Contains(f) => f.find(s.as_bytes()).is_some(),
            Matcher::Other(p) => like(p, s),
        }
    }
}

/// Whether `s` matches the pattern as SQL's `LIKE` does (`*` any run of characters, newlines
/// included, `?` exactly one character). Linear in `s` for each run of text between `*`s: each is
/// placed leftmost, which is where any match can place it.
pub fn like(p: &Pattern, s: &str) -> bool {
    match p.0.as_slice() {
        [] => s.is_empty(),
        [Piece::Any] => true,
        [Piece::Text(t)] => s == t,
        [Piece::Text(t), Piece::Any] => s.starts_with(t.as_str()),
        [Piece::Any, Piece::Text(t)] => s.ends_with(t.as_str()),
        [Piece::Any, Piece::Text(t), Piece::Any] => s.contains(t.as_str()),
        pieces => glob(pieces, s),
    }
}

fn glob(pieces: &[Piece], s: &str) -> bool {
    let segments: Vec<&[Piece]> = pieces.split(|p| *p == Piece::Any).collect();
    let (first, rest) = segments.split_first().expect("split gives one");
    let Some((last, middle)) = rest.split_last() else {
        // No `*`: the one segment is the whole value.
        return segment_at(first, s, 0) == Some(s.len());
    };
    let Some(mut at) = segment_at(first, s, 0) else { return false };
    // The last segment ends the value: it starts its length in characters before the end.
    let chars: usize = last.iter().map(|p| if let Piece::Text(t) = p { t.chars().count() } else { 1 }).sum();
    let last_start = if chars == 0 {
        s.len()
    } else {
        match s.char_indices().rev().nth(chars - 1) {
            Some((i, _)) => i,
            None => return false,
        }
    };
    if last_start < at || segment_at(last, s, last_start) != Some(s.len()) {
        return false;
    }
    for seg in middle {
        match leftmost(seg, &s[..last_start], at) {
            Some(end) => at = end,
            None => return false,
        }
    }
    true
}

/// Where `seg` (text and `?`s) ends when it starts at byte `at` of `s`.
fn segment_at(seg: &[Piece], s: &str, mut at: usize) -> Option<usize> {
    for p in seg {
        match p {
            Piece::Text(t) => {
                if !s[at..].starts_with(t.as_str()) {
                    return None;
                }
                at += t.len();
            }
            Piece::One => at += s[at..].chars().next()?.len_utf8(),
            Piece::Any => unreachable!("segments hold no *"),
        }
    }
    Some(at)
}

/// The end of the leftmost placement of `seg` in `s` at or after byte `from`.
fn leftmost(seg: &[Piece], s: &str, from: usize) -> Option<usize> {
    match seg.first() {
        None => Some(from),
        Some(Piece::Text(t)) => s[from..].match_indices(t.as_str()).find_map(|(i, _)| segment_at(seg, s, from + i)),
        _ => s[from..].char_indices().map(|(i, _)| from + i).find_map(|i| segment_at(seg, s, i)),
    }
}

/// The columns of one scanned batch, as programs read them.
pub struct Columns {
    arrays: Vec<ArrayRef>,
    texts: Vec<Option<Text>>,
    ints: Vec<Option<Int64Array>>,
}

impl Columns {
    /// `batch`'s columns, each read as `reads` says (text, numbers).
    pub fn new(batch: &RecordBatch, reads: &[Reads]) -> Result<Columns, ArrowError> {
        let mut texts = Vec::with_capacity(reads.len());
        let mut ints = Vec::with_capacity(reads.len());
        for (a, r) in batch.columns().iter().zip(reads) {
            texts.push(if r.text { Some(Text::of(a)?) } else { None });
            ints.push(if r.int { Some(arrow::compute::cast(a, &DataType::Int64)?.as_primitive().clone()) } else { None });
        }
        Ok(Columns { arrays: batch.columns().to_vec(), texts, ints })
    }

    pub fn text(&self, col: usize, row: usize) -> Option<&str> {
        self.texts[col].as_ref().expect("a column read as text").get(row)
    }

    fn int(&self, col: usize, row: usize) -> Option<i64> {
        let a = self.ints[col].as_ref().expect("a column read as numbers");
        a.is_valid(row).then(|| a.value(row))
    }
}

/// A column as text: as it is when it is text, else cast as SQL's `CAST(… AS VARCHAR)` does.
pub enum Text {
    Utf8(StringArray),
    Large(LargeStringArray),
    View(StringViewArray),
}

impl Text {
    pub fn of(a: &ArrayRef) -> Result<Text, ArrowError> {
        Ok(match a.data_type() {
            DataType::Utf8 => Text::Utf8(a.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Text::Large(a.as_string::<i64>().clone()),
            DataType::Utf8View => Text::View(a.as_string_view().clone()),
            _ => Text::Utf8(arrow::compute::cast(a, &DataType::Utf8)?.as_string::<i32>().clone()),
        })
    }

    pub fn get(&self, row: usize) -> Option<&str> {
        match self {
            Text::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            Text::Large(a) => a.is_valid(row).then(|| a.value(row)),
            Text::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// The lower-case values of the row being tested, made when a test first needs them (in buffers
/// kept from row to row).
#[derive(Default)]
pub struct Scratch {
    /// (column, whether it has a value, its lower-case form); the first `len` are this row's.
    lowered: Vec<(usize, bool, String)>,
    len: usize,
}

impl Scratch {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn lowered(&mut self, cols: &Columns, col: usize, row: usize) -> Option<&str> {
        let at = match self.lowered[..self.len].iter().position(|(c, _, _)| *c == col) {
            Some(at) => at,
            None => {
                if self.len == self.lowered.len() {
                    self.lowered.push((col, false, String::new()));
                }
                let (c, has, buf) = &mut self.lowered[self.len];
                *c = col;
                buf.clear();
                let value = cols.text(col, row);
                *has = value.is_some();
                if let Some(v) = value {
                    lower_into(v, buf);
                }
                self.len += 1;
                self.len - 1
            }
        };
        let (_, has, buf) = &self.lowered[at];
        has.then_some(buf.as_str())
    }
}

/// `lower(s)` as the engine computes it.
pub fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    lower_into(s, &mut out);
    out
}

/// `lower(s)`, appended to `buf`.
fn lower_into(s: &str, buf: &mut String) {
    if s.is_ascii() {
        let start = buf.len();
        buf.push_str(s);
        buf[start..].make_ascii_lowercase();
    } else {
        buf.push_str(&s.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern(
            s.chars()
                .map(|c| match c {
                    '*' => Piece::Any,
                    '?' => Piece::One,
                    c => Piece::Text(c.to_string()),
                })
                .fold(Vec::new(), |mut v: Vec<Piece>, piece| {
                    match (v.last_mut(), piece) {
                        (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                        (_, piece) => v.push(piece),
                    }
                    v
                }),
        )
    }

    /// The same answers as a regular expression built as the engine builds one for `LIKE`.
    #[test]
    fn like_agrees_with_a_regex() {
        let patterns = ["a*b", "*a?c*", "a*b*c", "?", "??*", "*?", "a*", "*a*a*", "ab*?*ba", "é?*x", "*\n*", "a?b?c", "*ab*ab"];
        let values = ["", "a", "ab", "abc", "aXc", "acb", "abab", "ababab", "aab", "ba", "éxx", "éx", "a\nb", "a\u{e9}b\u{e9}c", "abba", "abXba", "cab"];
        for pat in patterns {
            let mut re = String::from("(?s)^");
            for c in pat.chars() {
                match c {
                    '*' => re.push_str(".*"),
                    '?' => re.push('.'),
                    c => re.push_str(&regex::escape(&c.to_string())),
                }
            }
            re.push('$');
            let re = regex::Regex::new(&re).unwrap();
            for v in values {
                assert_eq!(like(&p(pat), v), re.is_match(v), "{pat:?} against {v:?}");
            }
        }
    }

    #[test]
    fn like_is_linear_on_hostile_values() {
        let v = "\\".repeat(30_000);
        let start = std::time::Instant::now();
        assert!(!like(&p("*\\*\\*\\*x*"), &v));
        assert!(like(&p("*\\*\\*\\*"), &v));
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
    }
}
