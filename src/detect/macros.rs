//! Splunk-style macros in SQL: `` `name` `` is replaced by `(` + the macro's SQL + `)`, macros
//! may use macros, and a missing or recursive macro is an error that names it.

use std::collections::HashMap;

const MAX_DEPTH: usize = 16;

/// Why a macro could not be expanded; each names the macro.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroError {
    #[error("unclosed ` in SQL")]
    Unclosed,
    #[error("bad macro name `{0}`")]
    BadName(String),
    #[error("macro `{name}` uses itself (through {})", through.join(" → "))]
    Recursive { name: String, through: Vec<String> },
    #[error("unknown macro `{0}`")]
    Unknown(String),
}

impl MacroError {
    /// The macro it is about, if it names one.
    pub fn name(&self) -> Option<&str> {
        match self {
            MacroError::Unclosed => None,
            MacroError::BadName(n) | MacroError::Unknown(n) | MacroError::Recursive { name: n, .. } => Some(n),
        }
    }
}

/// Expands every `` `name` `` in `sql`. `macros` maps names to SQL text.
pub fn expand(sql: &str, macros: &HashMap<String, String>) -> Result<String, MacroError> {
    expand_depth(sql, macros, 0, &mut Vec::new(), None)
}

/// [`expand`], and for each line of the result (index 0 = line 1) the line of `sql` it comes
/// from: a macro's lines map to the line that names the macro. Errors then point into the file a
/// user wrote, not into the expansion.
pub fn expand_mapped(sql: &str, macros: &HashMap<String, String>) -> Result<(String, Vec<usize>), MacroError> {
    let mut lines = vec![1];
    let out = expand_depth(sql, macros, 0, &mut Vec::new(), Some(&mut lines))?;
    Ok((out, lines))
}

/// The source line of each output line so far (see [`expand_mapped`]).
fn advance(lines: &mut Option<&mut Vec<usize>>, text: &str, from_source: bool) {
    if let Some(lines) = lines {
        for _ in text.matches('\n') {
            let last = *lines.last().expect("starts with line 1");
            lines.push(if from_source { last + 1 } else { last });
        }
    }
}

fn expand_depth(
    sql: &str,
    macros: &HashMap<String, String>,
    depth: usize,
    stack: &mut Vec<String>,
    mut lines: Option<&mut Vec<usize>>,
) -> Result<String, MacroError> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    // Each backtick that is outside comments and string literals starts a macro name.
    while let Some(start) = next_macro(rest) {
        out.push_str(&rest[..start]);
        advance(&mut lines, &rest[..start], true);
        let after = &rest[start + 1..];
        let end = after.find('`').ok_or(MacroError::Unclosed)?;
        let name = after[..end].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(MacroError::BadName(name.to_string()));
        }
        if stack.iter().any(|s| s == name) || depth >= MAX_DEPTH {
            return Err(MacroError::Recursive { name: name.to_string(), through: stack.clone() });
        }
        let body = macros.get(name).ok_or_else(|| MacroError::Unknown(name.to_string()))?;
        stack.push(name.to_string());
        let body = expand_depth(&strip_comment_lines(body), macros, depth + 1, stack, None)?;
        stack.pop();
        out.push('(');
        out.push_str(body.trim());
        advance(&mut lines, body.trim(), false);
        out.push(')');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    advance(&mut lines, rest, true);
    Ok(out)
}

/// Byte index of the first backtick outside `--` comments, `/* */` comments and quoted strings.
fn next_macro(sql: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'`' => return Some(i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Drops whole-line `--` comments (macro files document themselves with them), so a comment
/// never swallows the closing parenthesis.
fn strip_comment_lines(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expands_nested() {
        let macros = m(&[("a", "-- doc\nx = 1 AND `b`"), ("b", "y = 2\n")]);
        assert_eq!(expand("WHERE `a` OR z", &macros).unwrap(), "WHERE (x = 1 AND (y = 2)) OR z");
    }

    #[test]
    fn comments_and_strings_are_left_alone() {
        let macros = m(&[("a", "x")]);
        let sql = "-- `b` in a comment\nSELECT '`c`', \"`d`\" /* `e` */ WHERE `a`";
        assert_eq!(
            expand(sql, &macros).unwrap(),
            "-- `b` in a comment\nSELECT '`c`', \"`d`\" /* `e` */ WHERE (x)"
        );
    }

    #[test]
    fn mapped_lines_point_into_the_source() {
        let macros = m(&[("a", "x = 1\nAND y = 2\nAND z = 3")]);
        let sql = "SELECT *\nFROM t\nWHERE `a`\nAND w = 4\nGROUP BY v";
        let (out, lines) = expand_mapped(sql, &macros).unwrap();
        assert_eq!(out, expand(sql, &macros).unwrap());
        assert_eq!(out.lines().count(), lines.len());
        // The macro's three lines are line 3 of the source; what follows keeps its own numbers.
        assert_eq!(lines, vec![1, 2, 3, 3, 3, 4, 5]);
        assert_eq!(out.lines().nth(5), Some("AND w = 4"));
    }

    #[test]
    fn errors_name_the_macro() {
        let macros = m(&[("a", "`a`")]);
        assert!(expand("`nope`", &macros).unwrap_err().to_string().contains("nope"));
        assert!(expand("`a`", &macros).unwrap_err().to_string().contains("uses itself"));
        assert!(expand("`a", &macros).unwrap_err().to_string().contains("unclosed"));
        assert!(expand("`a b`", &macros).unwrap_err().to_string().contains("bad macro name"));
    }
}
