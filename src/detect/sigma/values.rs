//! A Sigma value through its modifiers: `windash` variants, UTF-16 and base64 encodings, then the
//! wildcards of `contains`/`startswith`/`endswith`, giving the patterns a column is matched with.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsigma_parser::{Modifier, SigmaString, SigmaValue, SpecialChar, StringPart};

use super::Unsupported;

/// One piece of a pattern: literal text or a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Piece {
    Text(String),
    /// `*`: any run of characters.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A value to match: pieces in order. Literal text is never empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Pattern(pub Vec<Piece>);

impl Pattern {
    fn push_text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if let Some(Piece::Text(last)) = self.0.last_mut() {
            last.push_str(s);
        } else {
            self.0.push(Piece::Text(s.to_string()));
        }
    }

    fn push(&mut self, p: Piece) {
        match p {
            Piece::Text(s) => self.push_text(&s),
            Piece::Any if self.0.last() == Some(&Piece::Any) => {}
            other => self.0.push(other),
        }
    }

    fn literal(s: &str) -> Pattern {
        let mut p = Pattern::default();
        p.push_text(s);
        p
    }

    fn from_sigma(s: &SigmaString) -> Pattern {
        let mut p = Pattern::default();
        for part in &s.parts {
            p.push(match part {
                StringPart::Plain(t) => Piece::Text(t.clone()),
                StringPart::Special(SpecialChar::WildcardMulti) => Piece::Any,
                StringPart::Special(SpecialChar::WildcardSingle) => Piece::One,
            });
        }
        p
    }

    /// The text, when it has no wildcard.
    pub fn plain(&self) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                _ => return None,
            }
        }
        Some(out)
    }

    fn with_any_at(mut self, start: bool, end: bool) -> Pattern {
        if start && self.0.first() != Some(&Piece::Any) {
            self.0.insert(0, Piece::Any);
        }
        if end && self.0.last() != Some(&Piece::Any) {
            self.0.push(Piece::Any);
        }
        self
    }
}

/// What a value is between modifiers: text with wildcards, or bytes after a UTF-16 encoding.
enum Stage {
    Text(Vec<Pattern>),
    Bytes(Vec<Vec<u8>>),
}

/// The patterns of one value under `modifiers` (those that change values; the others are the
/// caller's). Several patterns are alternatives (any of them matches).
pub fn patterns(value: &SigmaValue, modifiers: &[Modifier]) -> Result<Vec<Pattern>, Unsupported> {
    let start = match value {
        SigmaValue::String(s) => Pattern::from_sigma(s),
        SigmaValue::Integer(n) => Pattern::literal(&n.to_string()),
        SigmaValue::Float(f) => Pattern::literal(&f.to_string()),
        SigmaValue::Bool(b) => Pattern::literal(&b.to_string()),
        SigmaValue::Null => return Err(Unsupported::Value("null with a string modifier".into())),
    };
    let mut stage = Stage::Text(vec![start]);
    for m in modifiers {
        stage = match (m, stage) {
            (Modifier::WindAsh, Stage::Text(ps)) => {
                let mut out = Vec::new();
                for p in ps {
                    out.extend(windash(&p)?);
                }
                Stage::Text(out)
            }
            (Modifier::Wide | Modifier::Utf16be | Modifier::Utf16, Stage::Text(ps)) => {
                let mut out = Vec::new();
                for p in ps {
                    let text = p.plain().ok_or_else(|| wildcard_in(*m))?;
                    out.push(utf16(&text, *m));
                }
                Stage::Bytes(out)
            }
            (Modifier::Base64 | Modifier::Base64Offset, stage) => {
                let bytes: Vec<Vec<u8>> = match stage {
                    Stage::Bytes(b) => b,
                    Stage::Text(ps) => ps
                        .iter()
                        .map(|p| {
                            p.plain()
                                .map(String::into_bytes)
                                .ok_or_else(|| wildcard_in(*m))
                        })
                        .collect::<Result<_, _>>()?,
                };
                let mut out = Vec::new();
                for b in bytes {
                    if *m == Modifier::Base64 {
                        out.push(Pattern::literal(&STANDARD.encode(&b)));
                    } else {
                        out.extend(base64_offsets(&b).iter().map(|s| Pattern::literal(s)));
                    }
                }
                Stage::Text(out)
            }
            (
                m @ (Modifier::WindAsh | Modifier::Wide | Modifier::Utf16be | Modifier::Utf16),
                Stage::Bytes(_),
            ) => {
                return Err(Unsupported::Modifier(format!(
                    "{} after a UTF-16 encoding",
                    name(*m)
                )));
            }
            (_, stage) => stage,
        };
    }
    let texts = match stage {
        Stage::Text(ps) => ps,
        // UTF-16 without base64: the bytes as text (ASCII becomes characters with NULs between).
        Stage::Bytes(bs) => bs
            .into_iter()
            .map(|b| {
                String::from_utf8(b)
                    .map(|s| Pattern::literal(&s))
                    .map_err(|_| {
                        Unsupported::Value("UTF-16 of non-ASCII text without base64".into())
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let contains = modifiers.contains(&Modifier::Contains);
    let start = contains || modifiers.contains(&Modifier::EndsWith);
    let end = contains || modifiers.contains(&Modifier::StartsWith);
    Ok(texts
        .into_iter()
        .map(|p| p.with_any_at(start, end))
        .collect())
}

fn wildcard_in(m: Modifier) -> Unsupported {
    Unsupported::Value(format!("a wildcard in a value encoded by {}", name(m)))
}

/// A modifier's name as rules write it.
pub fn name(m: Modifier) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{m:?}").to_lowercase())
}

fn utf16(text: &str, m: Modifier) -> Vec<u8> {
    let units = text.encode_utf16();
    match m {
        Modifier::Utf16be => units.flat_map(u16::to_be_bytes).collect(),
        // `utf16`: a byte-order mark, then little-endian (as Windows writes it).
        Modifier::Utf16 => [0xFF, 0xFE]
            .into_iter()
            .chain(units.flat_map(u16::to_le_bytes))
            .collect(),
        _ => units.flat_map(u16::to_le_bytes).collect(),
    }
}

/// The three base64 forms of `bytes` inside a longer encoded text: at offsets 0, 1 and 2 of a
/// 3-byte group, without the characters that depend on the bytes around it.
pub fn base64_offsets(bytes: &[u8]) -> [String; 3] {
    const START: [usize; 3] = [0, 2, 3];
    // Characters to drop at the end, by (length + offset) % 3.
    const END: [usize; 3] = [0, 3, 2];
    std::array::from_fn(|i| {
        let mut shifted = vec![b' '; i];
        shifted.extend_from_slice(bytes);
        let enc = STANDARD.encode(&shifted);
        let end = enc.len() - END[(bytes.len() + i) % 3];
        enc[START[i].min(end)..end].to_string()
    })
}

/// Dashes a Windows command line accepts where a `-` or `/` starts an option.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Most variants one value may expand to (5 per option character).
const MAX_VARIANTS: usize = 625;

/// `windash`: every `-` or `/` that starts an option (no word character before it, one after it)
/// in each of its five forms: `-`, `/`, en dash, em dash, horizontal bar.
fn windash(p: &Pattern) -> Result<Vec<Pattern>, Unsupported> {
    let mut variants = vec![Pattern::default()];
    for piece in &p.0 {
        let Piece::Text(t) = piece else {
            for v in &mut variants {
                v.push(piece.clone());
            }
            continue;
        };
        let chars: Vec<char> = t.chars().collect();
        let is_word = |c: char| c.is_alphanumeric() || c == '_';
        let mut run = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let option = matches!(c, '-' | '/')
                && (i == 0 || !is_word(chars[i - 1]))
                && chars.get(i + 1).is_some_and(|&n| is_word(n));
            if !option {
                run.push(c);
                continue;
            }
            for v in &mut variants {
                v.push_text(&run);
            }
            run.clear();
            variants = variants
                .into_iter()
                .flat_map(|v| {
                    DASHES.iter().map(move |d| {
                        let mut v = v.clone();
                        v.push_text(&d.to_string());
                        v
                    })
                })
                .collect();
            if variants.len() > MAX_VARIANTS {
                return Err(Unsupported::Value(format!(
                    "windash: more than {MAX_VARIANTS} forms of {t:?}"
                )));
            }
        }
        for v in &mut variants {
            v.push_text(&run);
        }
    }
    Ok(variants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SigmaValue {
        SigmaValue::String(SigmaString::new(v))
    }

    fn texts(ps: Vec<Pattern>) -> Vec<String> {
        ps.into_iter().map(|p| p.plain().unwrap()).collect()
    }

    #[test]
    fn base64offset_gives_the_three_alignments() {
        // SigmaHQ's documented example: `|base64offset|contains: /bin/bash`.
        assert_eq!(
            base64_offsets(b"/bin/bash"),
            [
                "L2Jpbi9iYXNo".to_string(),
                "9iaW4vYmFza".to_string(),
                "vYmluL2Jhc2".to_string()
            ]
        );
        // Each form is found in the encoding of the value at that offset of any text.
        for prefix in ["", "x", "xy", "xyz", "abcd"] {
            let whole = STANDARD.encode(format!("{prefix}IEX (New-Object Net.WebClient) tail"));
            assert!(
                base64_offsets(b"IEX (New-Object Net.WebClient)")
                    .iter()
                    .any(|f| whole.contains(f.as_str())),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn wide_then_base64() {
        let ps = patterns(&s("ping"), &[Modifier::Wide, Modifier::Base64]).unwrap();
        assert_eq!(texts(ps), ["cABpAG4AZwA="]);
        let be = patterns(&s("A"), &[Modifier::Utf16be, Modifier::Base64]).unwrap();
        assert_eq!(texts(be), [STANDARD.encode([0, b'A'])]);
        let bom = patterns(&s("A"), &[Modifier::Utf16, Modifier::Base64]).unwrap();
        assert_eq!(texts(bom), [STANDARD.encode([0xFF, 0xFE, b'A', 0])]);
        assert!(
            patterns(&s("a*b"), &[Modifier::Base64]).is_err(),
            "a wildcard cannot be encoded"
        );
    }

    #[test]
    fn windash_expands_option_dashes_only() {
        let ps = patterns(&s(" -enc "), &[Modifier::WindAsh]).unwrap();
        assert_eq!(
            texts(ps),
            [
                " -enc ",
                " /enc ",
                " \u{2013}enc ",
                " \u{2014}enc ",
                " \u{2015}enc "
            ]
        );
        // A dash inside a word, or before a space, is not an option.
        assert_eq!(
            texts(patterns(&s("x-y - z"), &[Modifier::WindAsh]).unwrap()),
            ["x-y - z"]
        );
        // Two options: every combination.
        assert_eq!(
            patterns(&s("-a -b"), &[Modifier::WindAsh]).unwrap().len(),
            25
        );
    }

    #[test]
    fn contains_startswith_endswith_add_wildcards_once() {
        let p = &patterns(&s("*a"), &[Modifier::Contains]).unwrap()[0];
        assert_eq!(p.0, [Piece::Any, Piece::Text("a".into()), Piece::Any]);
        let p = &patterns(&s("a"), &[Modifier::StartsWith]).unwrap()[0];
        assert_eq!(p.0, [Piece::Text("a".into()), Piece::Any]);
        let p = &patterns(&s(r"a\*b"), &[Modifier::EndsWith]).unwrap()[0];
        assert_eq!(
            p.0,
            [Piece::Any, Piece::Text("a*b".into())],
            "an escaped * is text"
        );
    }
}
