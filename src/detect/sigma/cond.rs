//! A rule's compiled condition: a small tree of tests on one event's columns, from which come both
//! the rule's SQL ([`Cond::to_sql`], what `--show-sql` prints and a rule run alone executes) and
//! the evaluator that runs many rules in one scan ([`super::eval`]). Both read the same tree, so
//! they mean the same thing; every test is two-valued (a null value fails it, never makes it
//! unknown), so `not` reads as Sigma means it.

use serde::{Deserialize, Serialize};

use super::fields::{Column, Kind};
use super::values::{Pattern, Piece};

/// A condition over one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cond {
    /// Always true (a lone `*`).
    True,
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    /// At least `n` of the parts hold (`N of …`).
    AtLeast(u64, Vec<Cond>),
    /// The column is null (`true`) or not (`false`).
    Null(Column, bool),
    /// A number column equals a whole number.
    IntEq(Column, i64),
    /// The column (a number column, or text read as a number) against a number.
    Compare { col: Column, op: Op, n: String },
    /// The column's text (lower-case unless `cased`) matches one of the patterns, whose texts are
    /// already folded the same way.
    Text { col: Column, cased: bool, patterns: Vec<Pattern> },
    /// The column's text matches the regular expression (flags inline).
    Regex { col: Column, pattern: String },
    /// The column's text is an address inside the network.
    Cidr { col: Column, net: String },
    /// The column's text against another column's (`|fieldref`).
    FieldRef { col: Column, other: Column, cased: bool, how: How },
    /// `|neq`: the column has a value and the test fails.
    Neq(Column, Box<Cond>),
}

/// A comparison of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
        }
    }

    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Gte => a >= b,
            Op::Lt => a < b,
            Op::Lte => a <= b,
        }
    }
}

/// How `|fieldref` compares the two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

impl Cond {
    /// Never true: a test of a field the log source's events do not carry
    /// ([`super::fields::Logsource::lacks`]).
    pub fn never() -> Cond {
        Cond::Not(Box::new(Cond::True))
    }

    /// The condition as SQL over the table's columns.
    pub fn to_sql(&self) -> String {
        match self {
            Cond::True => "true".into(),
            Cond::And(xs) => join(xs.iter().map(Cond::to_sql).collect(), "AND"),
            Cond::Or(xs) => join(xs.iter().map(Cond::to_sql).collect(), "OR"),
            Cond::Not(x) => format!("(NOT {})", x.to_sql()),
            Cond::AtLeast(n, xs) => {
                let sum = xs.iter().map(|e| format!("CASE WHEN {} THEN 1 ELSE 0 END", e.to_sql())).collect::<Vec<_>>().join(" + ");
                format!("(({sum}) >= {n})")
            }
            Cond::Null(c, true) => format!("({} IS NULL)", c.name),
            Cond::Null(c, false) => format!("({} IS NOT NULL)", c.name),
            Cond::IntEq(c, n) => format!("({} IS NOT NULL AND {} = {n})", c.name, c.name),
            Cond::Compare { col, op, n } => match col.kind {
                Kind::Int => format!("({} IS NOT NULL AND {} {} {n})", col.name, col.name, op.sql()),
                _ => format!("((TRY_CAST({} AS DOUBLE) {} {n}) IS TRUE)", text(col), op.sql()),
            },
            Cond::Text { col, cased, patterns } => {
                let subject = if *cased { text(col) } else { format!("lower({})", text(col)) };
                let alternatives = patterns.iter().map(|p| like(&subject, p)).collect();
                format!("({} IS NOT NULL AND {})", col.name, join(alternatives, "OR"))
            }
            Cond::Regex { col, pattern } => format!("({} IS NOT NULL AND {} ~ {})", col.name, text(col), quote(pattern)),
            Cond::Cidr { col, net } => format!("({}({}, {}) IS TRUE)", crate::engine::functions::CIDR_MATCH, text(col), quote(net)),
            Cond::FieldRef { col, other, cased, how } => {
                let side = |c: &Column| if *cased { text(c) } else { format!("lower({})", text(c)) };
                let (a, b) = (side(col), side(other));
                let test = match how {
                    How::Contains => format!("contains({a}, {b})"),
                    How::StartsWith => format!("starts_with({a}, {b})"),
                    How::EndsWith => format!("ends_with({a}, {b})"),
                    How::Equals => format!("{a} = {b}"),
                };
                format!("({} IS NOT NULL AND {} IS NOT NULL AND {test})", col.name, other.name)
            }
            Cond::Neq(c, x) => format!("({} IS NOT NULL AND NOT {})", c.name, x.to_sql()),
        }
    }

    /// The columns the condition reads, each once, in the order met.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        self.visit_columns(&mut |c| {
            if !out.contains(&c) {
                out.push(c);
            }
        });
        out
    }

    fn visit_columns(&self, f: &mut impl FnMut(&'static str)) {
        match self {
            Cond::True => {}
            Cond::And(xs) | Cond::Or(xs) | Cond::AtLeast(_, xs) => xs.iter().for_each(|x| x.visit_columns(f)),
            Cond::Not(x) => x.visit_columns(f),
            Cond::Null(c, _) | Cond::IntEq(c, _) => f(c.name),
            Cond::Compare { col, .. } | Cond::Text { col, .. } | Cond::Regex { col, .. } | Cond::Cidr { col, .. } => f(col.name),
            Cond::FieldRef { col, other, .. } => {
                f(col.name);
                f(other.name);
            }
            Cond::Neq(c, x) => {
                f(c.name);
                x.visit_columns(f);
            }
        }
    }
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

/// `subject` matched against one (already folded) pattern, through the fastest form that says
/// it: equality, `starts_with`, `ends_with`, `contains`, else `LIKE`.
fn like(subject: &str, p: &Pattern) -> String {
    match p.0.as_slice() {
        [] => format!("{subject} = ''"),
        [Piece::Any] => "true".to_string(),
        [Piece::Text(t)] => format!("{subject} = {}", quote(t)),
        [Piece::Text(t), Piece::Any] => format!("starts_with({subject}, {})", quote(t)),
        [Piece::Any, Piece::Text(t)] => format!("ends_with({subject}, {})", quote(t)),
        [Piece::Any, Piece::Text(t), Piece::Any] => format!("contains({subject}, {})", quote(t)),
        pieces => {
            let mut pat = String::new();
            for piece in pieces {
                match piece {
                    Piece::Any => pat.push('%'),
                    Piece::One => pat.push('_'),
                    Piece::Text(t) => {
                        for c in t.chars() {
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
