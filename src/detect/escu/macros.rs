//! Splunk search macros: `` `name` `` and `` `name(arg1, arg2)` `` replaced by their definition
//! (from `macros/*.yml`), `$arg$` by the arguments, recursively, as Splunk expands them before
//! it parses a search.

use std::collections::HashMap;

/// One macro: its argument names and its definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Macro {
    pub args: Vec<String>,
    pub definition: String,
}

/// Macros by name and arity (Splunk's `name(2)` is another macro than `name`).
#[derive(Debug, Clone, Default)]
pub struct Macros {
    by_key: HashMap<(String, usize), Macro>,
}

/// The macros Splunk's Common Information Model app defines, which `security_content` uses but
/// does not ship.
const CIM_MACROS: &[(&str, &[&str], &str)] = &[("drop_dm_object_name", &["object"], "rename $object$.* AS *")];

/// Expansion deeper than this is a cycle.
const MAX_DEPTH: usize = 20;

/// A search expanding to more text than this is refused: macros calling each other twice over,
/// twenty deep, would otherwise grow a million-fold.
pub const MAX_EXPANDED: usize = 1 << 20;

impl Macros {
    pub fn new() -> Macros {
        let mut m = Macros::default();
        for (name, args, def) in CIM_MACROS {
            m.insert(name, args.iter().map(|a| a.to_string()).collect(), def.to_string());
        }
        m
    }

    pub fn insert(&mut self, name: &str, args: Vec<String>, definition: String) {
        self.by_key.insert((name.to_string(), args.len()), Macro { args, definition });
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// `text` with every macro call expanded. `missing` decides what an undefined macro becomes
    /// (`None`: an error naming it).
    pub fn expand(&self, text: &str, missing: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        self.expand_at(text, missing, 0)
    }

    fn expand_at(&self, text: &str, missing: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, String> {
        if depth > MAX_DEPTH {
            return Err(format!("macros nested more than {MAX_DEPTH} deep (a cycle?)"));
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find('`') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('`').ok_or_else(|| format!("unclosed macro call: `{after}"))?;
            let call = after[..end].trim();
            let (name, args) = split_call(call)?;
            let body = match self.by_key.get(&(name.to_string(), args.len())) {
                Some(m) => {
                    let mut body = m.definition.clone();
                    for (a, v) in m.args.iter().zip(&args) {
                        body = body.replace(&format!("${a}$"), v);
                    }
                    body
                }
                None => missing(name).ok_or_else(|| match args.len() {
                    0 => format!("unknown macro `{name}`"),
                    n => format!("unknown macro `{name}({n})`"),
                })?,
            };
            out.push_str(&self.expand_at(&body, missing, depth + 1)?);
            if out.len() > MAX_EXPANDED {
                return Err(format!("the search expands to more than {} KiB (macros calling each other over and over?)", MAX_EXPANDED >> 10));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `name(a, "b, c")` → (`name`, [`a`, `b, c`]): arguments split at top-level commas, quotes of a
/// wholly quoted argument removed.
fn split_call(call: &str) -> Result<(&str, Vec<String>), String> {
    let Some(open) = call.find('(') else { return Ok((call, Vec::new())) };
    let name = call[..open].trim();
    let inner = call[open + 1..].strip_suffix(')').ok_or_else(|| format!("macro call without a closing parenthesis: `{call}`"))?;
    let mut args = Vec::new();
    let (mut depth, mut quoted, mut from) = (0i32, false, 0);
    let bytes = inner.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                args.push(inner[from..i].to_string());
                from = i + 1;
            }
            _ => {}
        }
    }
    if !inner.trim().is_empty() {
        args.push(inner[from..].to_string());
    }
    let args = args
        .into_iter()
        .map(|a| {
            let a = a.trim();
            a.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(a).to_string()
        })
        .collect();
    Ok((name, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_with_arguments_nest_and_cycles_stop() {
        let mut m = Macros::new();
        m.insert("summ", vec![], "summariesonly=`cfg` fillnull_value=null".into());
        m.insert("cfg", vec![], "false".into());
        m.insert("ctime", vec!["field".into()], r#"convert timeformat="%Y" ctime($field$)"#.into());
        let none = |_: &str| None;
        assert_eq!(m.expand("| tstats `summ` count", &none).unwrap(), "| tstats summariesonly=false fillnull_value=null count");
        assert_eq!(m.expand("| `ctime(firstTime)`", &none).unwrap(), r#"| convert timeformat="%Y" ctime(firstTime)"#);
        assert_eq!(m.expand(r#"| `drop_dm_object_name("Processes")`"#, &none).unwrap(), "| rename Processes.* AS *");
        assert_eq!(m.expand("`nope`", &none).unwrap_err(), "unknown macro `nope`");
        assert_eq!(m.expand("`ctime`", &none).unwrap_err(), "unknown macro `ctime`");
        assert_eq!(m.expand("`x_filter`", &|n: &str| n.ends_with("_filter").then(|| "search *".into())).unwrap(), "search *");
        m.insert("a", vec![], "`b`".into());
        m.insert("b", vec![], "`a`".into());
        assert!(m.expand("`a`", &none).unwrap_err().contains("a cycle"));
        // Each level calls the next twice: 2^16 copies of the leaf, 2.6 MB, without the limit.
        for level in 0..16 {
            m.insert(&format!("x{level}"), vec![], format!("`x{}` `x{}`", level + 1, level + 1));
        }
        m.insert("x16", vec![], "Processes.process=*a-rather-long-value*".into());
        assert!(m.expand("`x0`", &none).unwrap_err().contains("expands to more than 1024 KiB"));
        assert_eq!(split_call(r#"f("a, b", c(d, e))"#).unwrap(), ("f", vec!["a, b".to_string(), "c(d, e)".to_string()]));
    }
}
