//! SPL text (macros already expanded) → [`Command`]s, with the grammar of `spl.pest`.

use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "detect/escu/spl.pest"]
struct Spl;

/// One command of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Tstats(Tstats),
    /// `where` with an eval expression.
    Where(Expr),
    /// `search` with a search expression.
    Search(Search),
    Eval(Vec<(String, Expr)>),
    Rename(Vec<(String, String)>),
    Table(Vec<String>),
    Fields { remove: bool, fields: Vec<String> },
    Stats { event: bool, aggs: Vec<Aggregate>, by: Vec<String> },
    Join { options: Vec<(String, String)>, fields: Vec<String>, sub: Vec<Command> },
    Regex { field: String, negate: bool, pattern: String },
    /// `lookup NAME col AS field … OUTPUT col AS field …`: the input pairs and the output pairs
    /// (lookup column, event field); `new` for OUTPUTNEW.
    Lookup { options: Vec<(String, String)>, name: String, inputs: Vec<(String, String)>, outputs: Vec<(String, String)>, new: bool },
    /// `bin [span=S] field`.
    Bin { options: Vec<(String, String)>, field: String },
    /// `rex [field=F] [max_match=N] [mode=…] "regex with (?<named>groups)"`.
    Rex { options: Vec<(String, String)>, pattern: String },
    Convert { options: Vec<(String, String)>, conversions: Vec<(String, String, Option<String>)> },
    Dedup(Vec<String>),
    /// A command outside the subset, by name.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tstats {
    pub options: Vec<(String, String)>,
    pub aggs: Vec<Aggregate>,
    pub datamodel: String,
    pub filter: Option<Search>,
    pub by: Vec<String>,
    pub span: Option<String>,
}

/// `func(field) AS name`; `count` has no field; `func(eval(expr))` has an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub func: String,
    pub field: Option<String>,
    pub alias: Option<String>,
    pub eval: Option<Expr>,
}

impl Aggregate {
    /// The output field's name: the alias, else `func(field)` as Splunk names it.
    pub fn name(&self) -> String {
        match (&self.alias, &self.field) {
            (Some(a), _) => a.clone(),
            (None, Some(f)) => format!("{}({f})", self.func),
            (None, None) => self.func.clone(),
        }
    }
}

/// A search-language expression: `field=value` terms (case-insensitive, `*` wildcards).
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    And(Vec<Search>),
    Or(Vec<Search>),
    Not(Box<Search>),
    Compare { field: String, op: String, value: String },
    In { field: String, values: Vec<String> },
    /// A bare word (searches the raw event): not in the subset.
    Word(String),
}

/// An eval expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Field(String),
    Str(String),
    Num(String),
    Call(String, Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Binary(String, Box<Expr>, Box<Expr>),
}

/// Parses a whole search. The error names the line and column and what was expected.
pub fn parse(text: &str) -> Result<Vec<Command>, String> {
    let mut pairs = Spl::parse(Rule::search, text).map_err(|e| e.to_string())?;
    let search = pairs.next().expect("search");
    let pipeline = kids(search).next().expect("pipeline");
    Ok(pipeline_of(pipeline))
}

/// Whether a pair is a content pair, not a keyword token (`k_by`, `k_or`, …).
fn not_keyword(p: &Pair<'_, Rule>) -> bool {
    !matches!(
        p.as_rule(),
        Rule::k_tstats | Rule::k_from | Rule::k_datamodel | Rule::k_where | Rule::k_by | Rule::k_as | Rule::k_search | Rule::k_eval
            | Rule::k_rename | Rule::k_table | Rule::k_fields | Rule::k_join | Rule::k_regex | Rule::k_convert | Rule::k_dedup
            | Rule::k_or | Rule::k_and | Rule::k_not | Rule::k_in | Rule::k_like | Rule::k_rex | Rule::k_bin | Rule::k_lookup
    )
}

/// A pair's content pairs, keywords left out.
fn kids(p: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    p.into_inner().filter(not_keyword)
}

fn pipeline_of(p: Pair<'_, Rule>) -> Vec<Command> {
    kids(p).map(command).collect()
}

/// A quoted string's text, with `\"` and `\\` unescaped; other text as it is.
pub fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some(n @ ('"' | '\\'))) => {
                        out.push(n);
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            out
        }
        None => s.to_string(),
    }
}

fn field(p: Pair<'_, Rule>) -> String {
    unquote(p.as_str())
}

fn option(p: Pair<'_, Rule>) -> (String, String) {
    let mut i = kids(p);
    let name = i.next().unwrap().as_str().to_ascii_lowercase();
    let value = unquote(i.next().unwrap().as_str());
    (name, value)
}

/// An aggregate: `count`, `count AS n`, `values(x)`, `values(x) AS y` (the parentheses tell a
/// lone field from an alias).
fn aggregate(p: Pair<'_, Rule>) -> Aggregate {
    let has_argument = p.as_str().contains('(');
    let mut func = String::new();
    let mut fields = Vec::new();
    let mut eval = None;
    for x in kids(p) {
        match x.as_rule() {
            Rule::agg_func => func = x.as_str().to_ascii_lowercase(),
            Rule::field => fields.push(field(x)),
            Rule::agg_eval => eval = Some(expr(x.into_inner().find(|e| e.as_rule() == Rule::e_expr).unwrap())),
            _ => {}
        }
    }
    let mut fields = fields.into_iter();
    let (field, alias) = if has_argument && eval.is_none() { (fields.next(), fields.next()) } else { (None, fields.next()) };
    Aggregate { func: if func == "distinct_count" { "dc".into() } else { func }, field, alias, eval }
}

fn command(p: Pair<'_, Rule>) -> Command {
    match p.as_rule() {
        Rule::tstats => {
            let mut t = Tstats { options: vec![], aggs: vec![], datamodel: String::new(), filter: None, by: vec![], span: None };
            for x in kids(p) {
                match x.as_rule() {
                    Rule::option => t.options.push(option(x)),
                    Rule::aggregate => t.aggs.push(aggregate(x)),
                    Rule::datamodel => t.datamodel = x.as_str().to_string(),
                    Rule::s_expr => t.filter = Some(search(x)),
                    Rule::span => t.span = Some(kids(x).next().unwrap().as_str().to_string()),
                    Rule::field => t.by.push(field(x)),
                    _ => {}
                }
            }
            Command::Tstats(t)
        }
        Rule::where_cmd => Command::Where(expr(kids(p).next().unwrap())),
        Rule::search_cmd => Command::Search(search(kids(p).next().unwrap())),
        Rule::eval_cmd => Command::Eval(
            kids(p)
                .map(|a| {
                    let mut i = kids(a);
                    (field(i.next().unwrap()), expr(i.next().unwrap()))
                })
                .collect(),
        ),
        Rule::rename_cmd => Command::Rename(
            kids(p)
                .map(|a| {
                    let mut i = kids(a);
                    (field(i.next().unwrap()), field(i.next().unwrap()))
                })
                .collect(),
        ),
        Rule::table_cmd => Command::Table(kids(p).map(field).collect()),
        Rule::fields_cmd => {
            let mut remove = false;
            let mut fields = Vec::new();
            for x in kids(p) {
                match x.as_rule() {
                    Rule::fields_sign => remove = x.as_str() == "-",
                    _ => fields.push(field(x)),
                }
            }
            Command::Fields { remove, fields }
        }
        Rule::stats_cmd => {
            let mut event = false;
            let mut aggs = Vec::new();
            let mut by = Vec::new();
            for x in kids(p) {
                match x.as_rule() {
                    Rule::stats_kind => event = x.as_str().eq_ignore_ascii_case("eventstats"),
                    Rule::aggregate => aggs.push(aggregate(x)),
                    _ => by.push(field(x)),
                }
            }
            Command::Stats { event, aggs, by }
        }
        Rule::join_cmd => {
            let mut options = Vec::new();
            let mut fields = Vec::new();
            let mut sub = Vec::new();
            for x in kids(p) {
                match x.as_rule() {
                    Rule::option => options.push(option(x)),
                    Rule::join_field => fields.push(field(kids(x).next().unwrap())),
                    Rule::pipeline => sub = pipeline_of(x),
                    _ => {}
                }
            }
            Command::Join { options, fields, sub }
        }
        Rule::regex_cmd => {
            let mut i = kids(p);
            let f = field(i.next().unwrap());
            let negate = i.next().unwrap().as_str() == "!=";
            Command::Regex { field: f, negate, pattern: unquote(i.next().unwrap().as_str()) }
        }
        Rule::lookup_cmd => {
            let (mut options, mut name, mut inputs, mut outputs, mut new, mut out) = (Vec::new(), String::new(), Vec::new(), Vec::new(), false, false);
            for x in kids(p) {
                match x.as_rule() {
                    Rule::option => options.push(option(x)),
                    Rule::lookup_name => name = x.as_str().to_string(),
                    Rule::output_kw => {
                        out = true;
                        new = x.as_str().eq_ignore_ascii_case("outputnew");
                    }
                    _ => {
                        let mut f = kids(x).map(field);
                        let col = f.next().unwrap();
                        let as_ = f.next().unwrap_or_else(|| col.clone());
                        if out { outputs.push((col, as_)) } else { inputs.push((col, as_)) }
                    }
                }
            }
            Command::Lookup { options, name, inputs, outputs, new }
        }
        Rule::bin_cmd => {
            let mut options = Vec::new();
            let mut f = String::new();
            for x in kids(p) {
                match x.as_rule() {
                    Rule::option => options.push(option(x)),
                    _ => f = field(x),
                }
            }
            Command::Bin { options, field: f }
        }
        Rule::rex_cmd => {
            let mut options = Vec::new();
            let mut pattern = String::new();
            for x in kids(p) {
                match x.as_rule() {
                    Rule::option => options.push(option(x)),
                    _ => pattern = unquote(x.as_str()),
                }
            }
            Command::Rex { options, pattern }
        }
        Rule::convert_cmd => {
            let mut options = Vec::new();
            let mut conversions = Vec::new();
            for x in kids(p) {
                match x.as_rule() {
                    Rule::option => options.push(option(x)),
                    _ => {
                        let mut i = kids(x);
                        let func = i.next().unwrap().as_str().to_ascii_lowercase();
                        let f = field(i.next().unwrap());
                        conversions.push((func, f, i.next().map(field)));
                    }
                }
            }
            Command::Convert { options, conversions }
        }
        Rule::dedup_cmd => Command::Dedup(kids(p).map(field).collect()),
        Rule::other => Command::Other(kids(p).next().unwrap().as_str().to_ascii_lowercase()),
        r => unreachable!("command {r:?}"),
    }
}

fn search(p: Pair<'_, Rule>) -> Search {
    match p.as_rule() {
        Rule::s_expr => search(kids(p).next().unwrap()),
        Rule::s_or => {
            let mut v: Vec<Search> = kids(p).map(search).collect();
            if v.len() == 1 { v.pop().unwrap() } else { Search::Or(v) }
        }
        Rule::s_and => {
            let mut v: Vec<Search> = kids(p).map(search).collect();
            if v.len() == 1 { v.pop().unwrap() } else { Search::And(v) }
        }
        Rule::s_not => search(kids(p).next().unwrap()),
        Rule::s_negated => Search::Not(Box::new(search(kids(p).next().unwrap()))),
        Rule::s_in => {
            let mut i = kids(p);
            let f = field(i.next().unwrap());
            Search::In { field: f, values: i.map(|v| v.as_str().to_string()).collect() }
        }
        Rule::s_cmp => {
            let mut i = kids(p);
            let f = field(i.next().unwrap());
            let op = i.next().unwrap().as_str().to_string();
            Search::Compare { field: f, op: if op == "==" { "=".into() } else { op }, value: i.next().unwrap().as_str().to_string() }
        }
        Rule::s_word => Search::Word(p.as_str().to_string()),
        r => unreachable!("search {r:?}"),
    }
}

fn expr(p: Pair<'_, Rule>) -> Expr {
    match p.as_rule() {
        Rule::e_expr | Rule::e_not => expr(kids(p).next().unwrap()),
        Rule::e_or | Rule::e_and => {
            let or = p.as_rule() == Rule::e_or;
            let mut i = kids(p).map(expr);
            let first = i.next().unwrap();
            i.fold(first, |a, b| if or { Expr::Or(Box::new(a), Box::new(b)) } else { Expr::And(Box::new(a), Box::new(b)) })
        }
        Rule::e_negated => Expr::Not(Box::new(expr(kids(p).next().unwrap()))),
        Rule::e_cmp => {
            let mut i = kids(p);
            let a = expr(i.next().unwrap());
            match i.next() {
                None => a,
                Some(op) => {
                    let op = op.as_str().trim().to_ascii_uppercase();
                    let op = if op == "==" { "=".to_string() } else { op };
                    Expr::Binary(op, Box::new(a), Box::new(expr(i.next().unwrap())))
                }
            }
        }
        Rule::e_concat => {
            let mut i = kids(p).map(expr);
            let first = i.next().unwrap();
            i.fold(first, |a, b| Expr::Binary(".".into(), Box::new(a), Box::new(b)))
        }
        Rule::e_add | Rule::e_mul => {
            let mut i = kids(p);
            let mut acc = expr(i.next().unwrap());
            while let Some(op) = i.next() {
                let b = expr(i.next().unwrap());
                acc = Expr::Binary(op.as_str().to_string(), Box::new(acc), Box::new(b));
            }
            acc
        }
        Rule::e_neg => Expr::Neg(Box::new(expr(kids(p).next().unwrap()))),
        Rule::call => {
            let mut i = kids(p);
            let name = i.next().unwrap().as_str().to_ascii_lowercase();
            Expr::Call(name, i.map(expr).collect())
        }
        Rule::number => Expr::Num(p.as_str().to_string()),
        Rule::string => Expr::Str(unquote(p.as_str())),
        Rule::sq_field => Expr::Field(p.as_str().trim_matches('\'').to_string()),
        Rule::e_field => Expr::Field(p.as_str().to_string()),
        r => unreachable!("expr {r:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_search_parses() {
        let spl = r#"| tstats summariesonly=false allow_old_summaries=true fillnull_value=null count FROM datamodel=Endpoint.Processes where (Processes.process_name=msiexec.exe OR Processes.original_file_name=msiexec.exe) by _time Processes.action Processes.dest | rename Processes.* as * | join process_id [| tstats count FROM datamodel=Network_Traffic.All_Traffic where All_Traffic.dest_port IN ("80","443") by All_Traffic.process_id All_Traffic.dest | rename All_Traffic.* as * ] | table _time user dest"#;
        let c = parse(spl).unwrap();
        assert_eq!(c.len(), 4);
        let Command::Tstats(t) = &c[0] else { panic!() };
        assert_eq!(t.options.len(), 3);
        assert_eq!(t.aggs, vec![Aggregate { func: "count".into(), field: None, alias: None, eval: None }]);
        assert_eq!(t.datamodel, "Endpoint.Processes");
        assert_eq!(t.by, vec!["_time", "Processes.action", "Processes.dest"]);
        assert!(matches!(t.filter, Some(Search::Or(_))));
        let Command::Join { fields, sub, .. } = &c[2] else { panic!() };
        assert_eq!(fields, &vec!["process_id".to_string()]);
        assert_eq!(sub.len(), 2);
        assert_eq!(c[3], Command::Table(vec!["_time".into(), "user".into(), "dest".into()]));
    }

    #[test]
    fn or_binds_tighter_than_and_in_searches() {
        let c = parse("| search a=1 b=2 OR c=3 AND NOT d=4 OR e=5").unwrap();
        let Command::Search(Search::And(terms)) = &c[0] else { panic!("{c:?}") };
        assert_eq!(terms.len(), 3, "{terms:?}");
        assert!(matches!(&terms[0], Search::Compare { field, .. } if field == "a"));
        assert!(matches!(&terms[1], Search::Or(v) if v.len() == 2));
        assert!(matches!(&terms[2], Search::Or(v) if v.len() == 2 && matches!(v[0], Search::Not(_))));
    }

    #[test]
    fn aggregates_and_where() {
        let c = parse(r#"| tstats values(Processes.process) as process count min(_time) as firstTime from datamodel=Endpoint.Processes where Processes.process!=unknown AND NOT Processes.user=SYSTEM by Processes.dest span=1h | where count >= 4 AND like(process, "%x%") | eval a=lower(b).".exe", c=if(isnull(d), 1, 2) | fields - RTLO* | lookup foo bar OUTPUT baz"#).unwrap();
        let Command::Tstats(t) = &c[0] else { panic!() };
        assert_eq!(t.aggs.iter().map(Aggregate::name).collect::<Vec<_>>(), ["process", "count", "firstTime"]);
        assert_eq!(t.span.as_deref(), Some("1h"));
        let Some(Search::And(terms)) = &t.filter else { panic!("{:?}", t.filter) };
        assert!(matches!(&terms[0], Search::Compare { op, .. } if op == "!="));
        assert!(matches!(&terms[1], Search::Not(_)));
        assert!(matches!(&c[1], Command::Where(Expr::And(..))));
        let Command::Eval(a) = &c[2] else { panic!() };
        assert_eq!(a.len(), 2);
        assert!(matches!(&a[0].1, Expr::Binary(op, ..) if op == "."));
        assert_eq!(c[3], Command::Fields { remove: true, fields: vec!["RTLO*".into()] });
        assert!(matches!(&c[4], Command::Lookup { name, .. } if name == "foo"));
    }
}
