//! Splunk-style macros in SQL: `` `name` `` is replaced by `(` + the macro's SQL + `)`, macros
//! may use macros, and a missing or recursive macro is an error that names it.

use std::collections::HashMap;

const MAX_DEPTH: usize = 16;

/// Expands every `` `name` `` in `sql`. `macros` maps names to SQL text.
pub fn expand(sql: &str, macros: &HashMap<String, String>) -> Result<String, String> {
    expand_depth(sql, macros, 0, &mut Vec::new())
}

fn expand_depth(
    sql: &str,
    macros: &HashMap<String, String>,
    depth: usize,
    stack: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    loop {
        // The next backtick that is outside comments and string literals.
        let Some(start) = next_macro(rest) else { break };
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('`').ok_or_else(|| "unclosed ` in SQL".to_string())?;
        let name = after[..end].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("bad macro name `{name}`"));
        }
        if stack.iter().any(|s| s == name) || depth >= MAX_DEPTH {
            return Err(format!("macro `{name}` uses itself (through {})", stack.join(" → ")));
        }
        let body = macros.get(name).ok_or_else(|| format!("unknown macro `{name}`"))?;
        stack.push(name.to_string());
        let body = expand_depth(&strip_comment_lines(body), macros, depth + 1, stack)?;
        stack.pop();
        out.push('(');
        out.push_str(body.trim());
        out.push(')');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
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
    fn errors_name_the_macro() {
        let macros = m(&[("a", "`a`")]);
        assert!(expand("`nope`", &macros).unwrap_err().contains("nope"));
        assert!(expand("`a`", &macros).unwrap_err().contains("uses itself"));
        assert!(expand("`a", &macros).unwrap_err().contains("unclosed"));
        assert!(expand("`a b`", &macros).unwrap_err().contains("bad macro name"));
    }
}
