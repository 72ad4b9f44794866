//! Parsed SPL → one DataFusion SQL query with Splunk's semantics, as a chain of CTEs (one per
//! command), each with the fields Splunk would have at that point.
//!
//! Values are Splunk's: text (`VARCHAR`), except `_time` (a timestamp), counts and arithmetic
//! (numbers) and `values()` (a sorted list of distinct texts, Splunk's multivalue field).
//! What is not in the subset is an [`Unsupported`] naming the construct.

use arrow::datatypes::DataType;

use super::lookups::Lookups;
use super::parse::{Aggregate, Command, Expr, Search, Tstats};
use crate::cim::Table;

/// A construct the translator does not support, by name (`command lookup`, `eval function
/// mvfilter`, `data model Endpoint.Filesystem`, …): `detect --check` groups by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

type Result<T> = std::result::Result<T, Unsupported>;

fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(Unsupported(what.into()))
}

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Time,
    /// A multivalue field: a list of texts.
    Multi,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
}

/// The fields after a command, the CTE that holds them, and the order of its rows when Splunk
/// defines one (tstats and stats sort by their `by` fields).
#[derive(Debug, Clone)]
struct Stage {
    cte: String,
    fields: Vec<Field>,
    order: Vec<String>,
}

impl Stage {
    fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The translation of a search.
#[derive(Debug, Clone)]
pub struct Translation {
    pub sql: String,
    /// The lake tables it reads.
    pub tables: Vec<Table>,
    /// Its output columns.
    pub columns: Vec<String>,
}

/// SQL for a field name: always quoted (`"Processes.process_name"`, `"firstTime"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

struct Builder<'a> {
    ctes: Vec<(String, String)>,
    tables: Vec<Table>,
    lookups: &'a Lookups,
}

impl Builder<'_> {
    fn add(&mut self, sql: String, fields: Vec<Field>, order: Vec<String>) -> Stage {
        let cte = format!("s{}", self.ctes.len() + 1);
        self.ctes.push((cte.clone(), sql));
        Stage { cte, fields, order }
    }
}

/// Translates a parsed search. `filter_macro`, when given, is applied to the final rows as a
/// cimlake SQL macro (`WHERE (`name`)`), the hook users edit to drop known false positives.
pub fn translate(commands: &[Command], filter_macro: Option<&str>, lookups: &Lookups) -> Result<Translation> {
    let mut b = Builder { ctes: Vec::new(), tables: Vec::new(), lookups };
    let last = pipeline(&mut b, commands)?;
    let columns: Vec<String> = last.fields.iter().map(|f| f.name.clone()).collect();
    let mut sql = String::from("WITH ");
    for (i, (name, body)) in b.ctes.iter().enumerate() {
        if i > 0 {
            sql.push_str(",\n");
        }
        sql.push_str(&format!("{name} AS (\n    {}\n)", body.replace('\n', "\n    ")));
    }
    let select: Vec<String> = last.fields.iter().map(|f| ident(&f.name)).collect();
    sql.push_str(&format!("\nSELECT {} FROM {}", select.join(", "), last.cte));
    if let Some(m) = filter_macro {
        sql.push_str(&format!("\nWHERE (`{m}`)"));
    }
    let order: Vec<String> = last.order.iter().filter(|o| last.get(o).is_some()).map(|o| ident(o)).collect();
    if !order.is_empty() {
        sql.push_str(&format!("\nORDER BY {}", order.join(", ")));
    }
    let mut tables = b.tables.clone();
    tables.sort();
    tables.dedup();
    Ok(Translation { sql, tables, columns })
}

fn pipeline(b: &mut Builder, commands: &[Command]) -> Result<Stage> {
    let Some(Command::Tstats(first)) = commands.first() else {
        return match commands.first() {
            Some(Command::Other(name)) => unsupported(format!("generating command {name}")),
            _ => unsupported("a search that does not start with tstats"),
        };
    };
    let mut stage = tstats(b, first)?;
    for c in &commands[1..] {
        stage = command(b, stage, c)?;
    }
    Ok(stage)
}

/// The lake table of a data model, and the prefix of its fields.
fn datamodel(name: &str) -> Result<(Table, &'static str)> {
    match name.to_ascii_lowercase().as_str() {
        "endpoint.processes" => Ok((Table::Processes, "Processes")),
        "network_traffic.all_traffic" | "network_traffic" => Ok((Table::AllTraffic, "All_Traffic")),
        _ => unsupported(format!("data model {name}")),
    }
}

/// A data model field of a table: its SQL over the raw row, and whether the lake holds it as an
/// integer. A CIM field the lake does not have is null, as in Splunk when no event carries it.
fn raw_column(table: Table, prefix: &str, name: &str) -> Result<(String, Option<DataType>)> {
    if name == "_time" {
        return Ok(("_time".into(), Some(crate::cim::time_type())));
    }
    // The data model's prefix, in any case (`Processes.`, `processes.`); outside it, the
    // indexed fields tstats also reads (`host` is the reporting host: the endpoint for both
    // models; `source`, `sourcetype`); any other name is a field no event has.
    let prefixed = name.get(..prefix.len() + 1).filter(|p| p.eq_ignore_ascii_case(&format!("{prefix}.")));
    let col = match prefixed {
        Some(_) => &name[prefix.len() + 1..],
        None => match name {
            "host" => if table == Table::Processes { "dest" } else { "dvc" },
            "source" | "sourcetype" => name,
            _ => return Ok(("CAST(NULL AS VARCHAR)".into(), None)),
        },
    };
    match table.schema().field_with_name(col) {
        Ok(f) => Ok((ident(col), Some(f.data_type().clone()))),
        Err(_) => Ok(("CAST(NULL AS VARCHAR)".into(), None)),
    }
}

fn is_integer(t: &Option<DataType>) -> bool {
    matches!(t, Some(DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64))
}

fn as_text(sql: &str, t: &Option<DataType>) -> String {
    match t {
        Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => sql.to_string(),
        _ => format!("CAST({sql} AS VARCHAR)"),
    }
}

/// A span (`1h`, `5m`, `1d`, `30s`) as a SQL interval.
fn interval(span: &str) -> Result<String> {
    let digits: String = span.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = &span[digits.len()..];
    let unit = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => "second",
        "m" | "min" | "mins" | "minute" | "minutes" => "minute",
        "h" | "hr" | "hrs" | "hour" | "hours" => "hour",
        "d" | "day" | "days" => "day",
        _ => return unsupported(format!("span={span}")),
    };
    Ok(format!("INTERVAL '{digits} {unit}'"))
}

fn tstats(b: &mut Builder, t: &Tstats) -> Result<Stage> {
    let (table, prefix) = datamodel(&t.datamodel)?;
    b.tables.push(table);
    let fill = t.options.iter().find(|(k, _)| k == "fillnull_value").map(|(_, v)| v.clone());
    for (k, v) in &t.options {
        if !matches!(k.as_str(), "summariesonly" | "allow_old_summaries" | "fillnull_value" | "prestats" | "chunk_size") || (k == "prestats" && v == "true") {
            return unsupported(format!("tstats option {k}={v}"));
        }
    }
    let mut inner = Vec::new();
    let mut fields = Vec::new();
    let mut not_null = Vec::new();
    for by in &t.by {
        let (sql, ty) = raw_column(table, prefix, by)?;
        if by == "_time" {
            let sql = match &t.span {
                Some(span) => format!("date_bin({}, _time, TIMESTAMP '1970-01-01T00:00:00Z')", interval(span)?),
                None => "_time".into(),
            };
            inner.push(format!("{sql} AS {}", ident(by)));
            fields.push(Field { name: by.clone(), kind: Kind::Time });
            continue;
        }
        let text = as_text(&sql, &ty);
        match &fill {
            Some(v) => inner.push(format!("coalesce({text}, {}) AS {}", lit(v), ident(by))),
            None => {
                inner.push(format!("{text} AS {}", ident(by)));
                not_null.push(format!("{sql} IS NOT NULL"));
            }
        }
        fields.push(Field { name: by.clone(), kind: Kind::Text });
    }
    let group: Vec<String> = t.by.iter().map(|f| ident(f)).collect();
    let mut aggs = Vec::new();
    for a in &t.aggs {
        let (sql, kind) = tstats_aggregate(table, prefix, a)?;
        aggs.push(format!("{sql} AS {}", ident(&a.name())));
        fields.push(Field { name: a.name(), kind });
    }
    // The aggregates read the raw row; the by fields are grouped as Splunk shows them (text,
    // filled). One SELECT: the raw columns the aggregates need are computed in the same scan.
    let mut filter = vec!["_time >= $earliest AND _time < $latest".to_string()];
    if let Some(s) = &t.filter {
        filter.push(format!("({})", search_sql(s, &|f: &str| raw_column(table, prefix, f).map(|(sql, ty)| (sql, ty_kind(&ty), ty)))?));
    }
    filter.extend(not_null);
    let select: Vec<String> = inner.iter().cloned().chain(aggs).collect();
    let group_by = if group.is_empty() {
        String::new()
    } else {
        // Group by the computed by fields' expressions (positions), as named in SELECT.
        format!("\nGROUP BY {}", (1..=t.by.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
    };
    let sql = format!(
        "SELECT {}\nFROM {}\nWHERE {}{group_by}",
        select.join(",\n       "),
        table.qualified_name(),
        filter.join("\n  AND "),
    );
    Ok(b.add(sql, fields, t.by.clone()))
}

fn ty_kind(t: &Option<DataType>) -> Kind {
    match t {
        Some(DataType::Timestamp(..)) => Kind::Time,
        _ if is_integer(t) => Kind::Number,
        _ => Kind::Text,
    }
}

fn tstats_aggregate(table: Table, prefix: &str, a: &Aggregate) -> Result<(String, Kind)> {
    if a.eval.is_some() {
        return unsupported("eval() inside an aggregate");
    }
    let col = |f: &Option<String>| -> Result<(String, Option<DataType>)> {
        match f {
            Some(f) => raw_column(table, prefix, f),
            None => unsupported(format!("{}() without a field", a.func)),
        }
    };
    Ok(match a.func.as_str() {
        "count" => match &a.field {
            None => ("count(*)".into(), Kind::Number),
            Some(_) => (format!("count({})", col(&a.field)?.0), Kind::Number),
        },
        "dc" => (format!("count(DISTINCT {})", col(&a.field)?.0), Kind::Number),
        "values" => {
            let (sql, ty) = col(&a.field)?;
            (format!("array_sort(array_distinct(array_agg({}) FILTER (WHERE {sql} IS NOT NULL)))", as_text(&sql, &ty)), Kind::Multi)
        }
        "min" | "max" | "sum" | "avg" => {
            let (sql, ty) = col(&a.field)?;
            match ty_kind(&ty) {
                Kind::Time => (format!("{}({sql})", a.func), Kind::Time),
                Kind::Number => (format!("{}({sql})", a.func), Kind::Number),
                _ => (format!("{}(TRY_CAST({sql} AS DOUBLE))", a.func), Kind::Number),
            }
        }
        "latest" | "earliest" => {
            let (sql, ty) = col(&a.field)?;
            let f = if a.func == "latest" { "last_value" } else { "first_value" };
            (format!("{f}({} ORDER BY _time)", as_text(&sql, &ty)), if ty_kind(&ty) == Kind::Time { Kind::Time } else { Kind::Text })
        }
        other => return unsupported(format!("tstats function {other}")),
    })
}

/// A field of a search: its SQL, its kind and, for a lake column, its type.
type Resolved = (String, Kind, Option<DataType>);
type Resolver<'a> = &'a dyn Fn(&str) -> Result<Resolved>;

/// A search expression over fields resolved by `resolve` to (SQL, kind, lake type). Every term is
/// true or false, never null (a missing field matches nothing), so `NOT` keeps the events
/// without the field, as in Splunk.
fn search_sql(s: &Search, resolve: Resolver<'_>) -> Result<String> {
    Ok(match s {
        Search::And(v) => format!("({})", v.iter().map(|x| search_sql(x, resolve)).collect::<Result<Vec<_>>>()?.join(" AND ")),
        Search::Or(v) => format!("({})", v.iter().map(|x| search_sql(x, resolve)).collect::<Result<Vec<_>>>()?.join(" OR ")),
        Search::Not(x) => format!("NOT ({})", search_sql(x, resolve)?),
        Search::Word(w) if w == "*" => "true".into(),
        Search::Word(w) => return unsupported(format!("search term without a field ({w})")),
        Search::In { field, values } => {
            let terms = values.iter().map(|v| term(field, "=", v, resolve)).collect::<Result<Vec<_>>>()?;
            format!("({})", terms.join(" OR "))
        }
        Search::Compare { field, op, value } => term(field, op, value, resolve)?,
    })
}

/// A search value as its characters, quotes removed and `\x` read as `x`; `None` for each
/// unescaped `*` (a wildcard).
fn value_pieces(raw: &str) -> Vec<Option<char>> {
    let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => Some(chars.next().unwrap_or('\\')),
            '*' => None,
            c => Some(c),
        });
    }
    out
}

/// A search value's text (its wildcards left out) and, when it has an unescaped `*`, the SQL
/// `LIKE` pattern it means (`%` for `*`, `%`, `_` and `\` escaped).
fn search_value(raw: &str) -> (String, Option<String>) {
    let pieces = value_pieces(raw);
    let text: String = pieces.iter().flatten().collect();
    let mut like = String::new();
    for p in &pieces {
        match p {
            None => like.push('%'),
            Some(c) => {
                if matches!(c, '%' | '_' | '\\') {
                    like.push('\\');
                }
                like.push(*c);
            }
        }
    }
    (text, pieces.contains(&None).then_some(like))
}

/// One `field op value` term.
fn term(field: &str, op: &str, value: &str, resolve: Resolver<'_>) -> Result<String> {
    let (sql, kind, ty) = resolve(field)?;
    let (text, like) = search_value(value);
    let present = format!("{sql} IS NOT NULL");
    if kind == Kind::Multi {
        // Any value matches: the values joined by U+0001 (which no log text holds), and the
        // pattern anchored between separators, its `*` not crossing one.
        if op != "=" {
            return unsupported(format!("search operator {op} on a multivalue field"));
        }
        let mut re = String::from("(?i)(?:^|\x01)");
        for p in value_pieces(value) {
            match p {
                None => re.push_str("[^\x01]*"),
                Some(c) => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push_str("(?:\x01|$)");
        return Ok(format!("coalesce(regexp_like(array_to_string({sql}, chr(1)), {}), false)", lit(&re)));
    }
    let matches = match (op, &like) {
        ("=" | "!=", Some(p)) if p == "%" => return Ok(if op == "=" { present } else { "false".into() }),
        ("=" | "!=", Some(p)) => format!("lower({}) LIKE lower({})", text_of(&sql, kind, &ty), lit(p)),
        ("=" | "!=", None) if is_integer(&ty) && text.parse::<i64>().is_ok() => format!("{sql} = {text}"),
        ("=" | "!=", None) => format!("lower({}) = lower({})", text_of(&sql, kind, &ty), lit(&text)),
        ("<" | ">" | "<=" | ">=", None) => match text.parse::<f64>() {
            Ok(_) if kind == Kind::Number || is_integer(&ty) => format!("{sql} {op} {text}"),
            Ok(_) => format!("TRY_CAST({sql} AS DOUBLE) {op} {text}"),
            Err(_) => format!("{} {op} {}", text_of(&sql, kind, &ty), lit(&text)),
        },
        _ => return unsupported(format!("search operator {op} with a wildcard")),
    };
    Ok(if op == "!=" { format!("({present} AND NOT ({matches}))") } else { format!("({present} AND {matches})") })
}

fn text_of(sql: &str, kind: Kind, ty: &Option<DataType>) -> String {
    match (kind, ty) {
        (Kind::Text, None) => sql.to_string(),
        _ => as_text(sql, ty),
    }
}

/// A stage's field for expressions: its SQL and kind; a field the stage does not have is null.
fn stage_field(stage: &Stage, name: &str) -> (String, Kind) {
    match stage.get(name) {
        Some(f) => (ident(&f.name), f.kind),
        None => ("CAST(NULL AS VARCHAR)".into(), Kind::Text),
    }
}

/// Field names of `stage` matching a pattern with `*`.
fn matching<'a>(stage: &'a Stage, pattern: &str) -> Vec<&'a Field> {
    stage.fields.iter().filter(|f| glob(pattern, &f.name).is_some()).collect()
}

/// When `name` matches `pattern` (one or more `*`), the texts the `*`s stand for.
fn glob(pattern: &str, name: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return (pattern == name).then(Vec::new);
    }
    let mut rest = name.strip_prefix(parts[0])?;
    let mut caught = Vec::new();
    for (i, part) in parts[1..].iter().enumerate() {
        let last = i == parts.len() - 2;
        let at = if last {
            if !rest.ends_with(part) || rest.len() < part.len() {
                return None;
            }
            rest.len() - part.len()
        } else {
            rest.find(part)?
        };
        caught.push(rest[..at].to_string());
        rest = &rest[at + part.len()..];
    }
    Some(caught)
}

/// A rename target with its `*`s replaced, in turn, by what the source pattern's `*`s caught.
fn fill_stars(to: &str, caught: Vec<String>) -> String {
    let mut caught = caught.into_iter();
    let mut out = String::new();
    for (j, part) in to.split('*').enumerate() {
        if j > 0 {
            out.push_str(&caught.next().unwrap_or_default());
        }
        out.push_str(part);
    }
    out
}

fn select_all(stage: &Stage) -> Vec<String> {
    stage.fields.iter().map(|f| ident(&f.name)).collect()
}

fn command(b: &mut Builder, stage: Stage, c: &Command) -> Result<Stage> {
    match c {
        Command::Tstats(_) => unsupported("tstats after the first command"),
        Command::Rename(pairs) => {
            // Each field with the stage column it reads.
            let mut cols: Vec<(String, Field)> = stage.fields.iter().map(|f| (f.name.clone(), f.clone())).collect();
            let mut order = stage.order.clone();
            for (from, to) in pairs {
                let renamed: Vec<(usize, String)> =
                    cols.iter().enumerate().filter_map(|(i, (_, f))| glob(from, &f.name).map(|caught| (i, fill_stars(to, caught)))).collect();
                for (i, new) in &renamed {
                    for o in order.iter_mut().filter(|o| **o == cols[*i].1.name) {
                        *o = new.clone();
                    }
                }
                // A renamed field replaces one already of the new name.
                let replaced: Vec<bool> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, (_, f))| !renamed.iter().any(|(j, _)| *j == i) && renamed.iter().any(|(_, n)| *n == f.name))
                    .collect();
                for (i, new) in renamed {
                    cols[i].1.name = new;
                }
                let mut gone = replaced.into_iter();
                cols.retain(|_| !gone.next().unwrap());
            }
            let select: Vec<String> =
                cols.iter().map(|(src, f)| if *src == f.name { ident(src) } else { format!("{} AS {}", ident(src), ident(&f.name)) }).collect();
            let sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
            Ok(b.add(sql, cols.into_iter().map(|(_, f)| f).collect(), order))
        }
        Command::Convert { options, conversions } => {
            let format = options.iter().find(|(k, _)| k == "timeformat").map(|(_, v)| v.clone()).unwrap_or("%m/%d/%Y %H:%M:%S".into());
            let mut fields = stage.fields.clone();
            let mut select = select_all(&stage);
            for (func, field, alias) in conversions {
                if func != "ctime" {
                    return unsupported(format!("convert {func}()"));
                }
                let Some(i) = fields.iter().position(|f| &f.name == field) else { continue };
                if fields[i].kind != Kind::Time {
                    continue;
                }
                let expr = format!("to_char({}, {})", ident(field), lit(&format));
                let name = alias.clone().unwrap_or(field.clone());
                match fields.iter().position(|f| f.name == name) {
                    Some(j) => {
                        select[j] = format!("{expr} AS {}", ident(&name));
                        fields[j].kind = Kind::Text;
                    }
                    None => {
                        select.push(format!("{expr} AS {}", ident(&name)));
                        fields.push(Field { name, kind: Kind::Text });
                    }
                }
            }
            let sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
            Ok(b.add(sql, fields, stage.order))
        }
        Command::Table(list) | Command::Fields { remove: false, fields: list } => {
            let mut fields: Vec<Field> = Vec::new();
            for pattern in list {
                for f in matching(&stage, pattern) {
                    if !fields.iter().any(|x| x.name == f.name) {
                        fields.push(f.clone());
                    }
                }
            }
            let select: Vec<String> = fields.iter().map(|f| ident(&f.name)).collect();
            if select.is_empty() {
                return unsupported("table or fields keeping no field");
            }
            let sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
            Ok(b.add(sql, fields, stage.order))
        }
        Command::Fields { remove: true, fields: list } => {
            let fields: Vec<Field> = stage.fields.iter().filter(|f| !list.iter().any(|p| glob(p, &f.name).is_some())).cloned().collect();
            let select: Vec<String> = fields.iter().map(|f| ident(&f.name)).collect();
            let sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
            Ok(b.add(sql, fields, stage.order))
        }
        Command::Where(e) => {
            let (sql, _) = expr(&stage, e)?;
            let sql = format!("SELECT * FROM {} WHERE coalesce({sql}, false)", stage.cte);
            let (fields, order) = (stage.fields.clone(), stage.order.clone());
            Ok(b.add(sql, fields, order))
        }
        Command::Search(s) => {
            let cond = search_sql(s, &|f: &str| {
                let (sql, kind) = stage_field(&stage, f);
                Ok((sql, kind, None))
            })?;
            let sql = format!("SELECT * FROM {} WHERE {cond}", stage.cte);
            let (fields, order) = (stage.fields.clone(), stage.order.clone());
            Ok(b.add(sql, fields, order))
        }
        Command::Regex { field, negate, pattern } => {
            regex::Regex::new(pattern).map_err(|e| Unsupported(format!("regex the engine cannot compile ({})", e.to_string().lines().last().unwrap_or(""))))?;
            let (sql, kind) = stage_field(&stage, field);
            if kind == Kind::Multi {
                return unsupported("regex on a multivalue field");
            }
            let m = format!("coalesce(regexp_like({sql}, {}), false)", lit(pattern));
            let cond = if *negate { format!("NOT {m}") } else { m };
            let sql = format!("SELECT * FROM {} WHERE {cond}", stage.cte);
            let (fields, order) = (stage.fields.clone(), stage.order.clone());
            Ok(b.add(sql, fields, order))
        }
        Command::Eval(assignments) => {
            let mut stage = stage;
            for (name, e) in assignments {
                let (sql, kind) = expr(&stage, e)?;
                let mut fields = stage.fields.clone();
                let mut select = select_all(&stage);
                match fields.iter().position(|f| &f.name == name) {
                    Some(i) => {
                        select[i] = format!("{sql} AS {}", ident(name));
                        fields[i].kind = kind;
                    }
                    None => {
                        select.push(format!("{sql} AS {}", ident(name)));
                        fields.push(Field { name: name.clone(), kind });
                    }
                }
                let q = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
                stage = b.add(q, fields, stage.order.clone());
            }
            Ok(stage)
        }
        Command::Stats { event, aggs, by } => stats(b, stage, *event, aggs, by),
        Command::Dedup(list) => {
            let keys: Vec<String> = list.iter().map(|f| stage_field(&stage, f).0).collect();
            let order = if stage.order.is_empty() { "1".to_string() } else { stage.order.iter().map(|o| ident(o)).collect::<Vec<_>>().join(", ") };
            let present: Vec<String> = keys.iter().map(|k| format!("{k} IS NOT NULL")).collect();
            let sql = format!(
                "SELECT {} FROM (SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {order}) AS dedup_rank FROM {} WHERE {}) ranked WHERE dedup_rank = 1",
                select_all(&stage).join(", "),
                keys.join(", "),
                stage.cte,
                present.join(" AND "),
            );
            let (fields, order) = (stage.fields.clone(), stage.order.clone());
            Ok(b.add(sql, fields, order))
        }
        Command::Join { options, fields, sub } => join(b, stage, options, fields, sub),
        Command::Rex { options, pattern } => rex(b, stage, options, pattern),
        Command::Lookup { options, name, inputs, outputs, new } => lookup(b, stage, options, name, inputs, outputs, *new),
        Command::Bin { options, field } => {
            let span = options.iter().find(|(k, _)| k == "span").map(|(_, v)| v.clone());
            let (Some(span), Some(f)) = (span, stage.get(field)) else { return unsupported("bin without span= on a field") };
            if f.kind != Kind::Time || options.len() != 1 {
                return unsupported("bin other than span= on _time");
            }
            let mut select = select_all(&stage);
            let i = stage.fields.iter().position(|x| &x.name == field).unwrap();
            select[i] = format!("date_bin({}, {}, TIMESTAMP '1970-01-01T00:00:00Z') AS {}", interval(&span)?, ident(field), ident(field));
            let sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
            let (fields, order) = (stage.fields.clone(), stage.order.clone());
            Ok(b.add(sql, fields, order))
        }
        Command::Other(name) => unsupported(format!("command {name}")),
    }
}

fn stats(b: &mut Builder, stage: Stage, event: bool, aggs: &[Aggregate], by: &[String]) -> Result<Stage> {
    let mut out_fields = Vec::new();
    let mut select = Vec::new();
    let keys: Vec<String> = by.iter().map(|f| stage_field(&stage, f).0).collect();
    for (f, k) in by.iter().zip(&keys) {
        if !event {
            select.push(format!("{k} AS {}", ident(f)));
            out_fields.push(Field { name: f.clone(), kind: stage.get(f).map_or(Kind::Text, |x| x.kind) });
        }
    }
    let over = if event {
        if keys.is_empty() { " OVER ()".to_string() } else { format!(" OVER (PARTITION BY {})", keys.join(", ")) }
    } else {
        String::new()
    };
    let mut agg_sql = Vec::new();
    for a in aggs {
        if a.eval.is_some() {
            return unsupported("eval() inside an aggregate");
        }
        let input = a.field.as_deref().map(|f| stage_field(&stage, f));
        let (sql, kind) = match (a.func.as_str(), &input) {
            ("count", None) => (format!("count(*){over}"), Kind::Number),
            ("count", Some((s, _))) => (format!("count({s}){over}"), Kind::Number),
            ("dc", Some((s, Kind::Multi))) if !event => (format!("cardinality(array_distinct(flatten(array_agg({s}))))"), Kind::Number),
            ("dc", Some((s, _))) if !event => (format!("count(DISTINCT {s})"), Kind::Number),
            ("values", Some((s, Kind::Multi))) if !event => (format!("array_sort(array_distinct(flatten(array_agg({s}) FILTER (WHERE {s} IS NOT NULL))))"), Kind::Multi),
            ("values", Some((s, _))) if !event => (format!("array_sort(array_distinct(array_agg(CAST({s} AS VARCHAR)) FILTER (WHERE {s} IS NOT NULL)))"), Kind::Multi),
            ("min" | "max", Some((s, Kind::Time))) => (format!("{}({s}){over}", a.func), Kind::Time),
            ("min" | "max" | "sum" | "avg", Some((s, Kind::Number))) => (format!("{}({s}){over}", a.func), Kind::Number),
            ("min" | "max" | "sum" | "avg", Some((s, Kind::Text))) => (format!("{}(TRY_CAST({s} AS DOUBLE)){over}", a.func), Kind::Number),
            (f, Some((s, Kind::Number | Kind::Text))) if statistic(f).is_some() => {
                let x = format!("TRY_CAST({s} AS DOUBLE)");
                (statistic(f).unwrap().replace("{x}", &x) + &over, Kind::Number)
            }
            (f, _) => return unsupported(format!("{} function {f}", if event { "eventstats" } else { "stats" })),
        };
        agg_sql.push(format!("{sql} AS {}", ident(&a.name())));
        out_fields.push(Field { name: a.name(), kind });
    }
    if event {
        // Every row kept, the aggregates added (or replaced).
        let names: Vec<String> = aggs.iter().map(Aggregate::name).collect();
        let mut fields: Vec<Field> = stage.fields.iter().filter(|f| !names.contains(&f.name)).cloned().collect();
        let mut sel: Vec<String> = fields.iter().map(|f| ident(&f.name)).collect();
        sel.extend(agg_sql);
        fields.extend(out_fields);
        let present: Vec<String> = keys.iter().map(|k| format!("{k} IS NOT NULL")).collect();
        let cond = if present.is_empty() { "true".into() } else { present.join(" AND ") };
        // Rows with a null by field get no aggregate in Splunk; here they are kept unchanged only
        // when every key is present, as the partitions are.
        let sql = format!("SELECT {} FROM {} WHERE {cond}", sel.join(", "), stage.cte);
        return Ok(b.add(sql, fields, stage.order));
    }
    select.extend(agg_sql);
    let present: Vec<String> = keys.iter().map(|k| format!("{k} IS NOT NULL")).collect();
    let mut sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
    if !present.is_empty() {
        sql.push_str(&format!(" WHERE {}", present.join(" AND ")));
        sql.push_str(&format!(" GROUP BY {}", (1..=by.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")));
    }
    Ok(b.add(sql, out_fields, by.to_vec()))
}

/// Splunk's statistics over numbers, as the engine's aggregate (`{x}` the argument): `stdev`
/// and `var` are the sample ones, `median` and `p50`/`perc50` the median, `pNN`/`percNN`
/// approximate percentiles as Splunk's are.
fn statistic(func: &str) -> Option<String> {
    Some(match func {
        "stdev" => "stddev({x})".into(),
        "stdevp" => "stddev_pop({x})".into(),
        "var" => "var_samp({x})".into(),
        "varp" => "var_pop({x})".into(),
        "median" | "p50" | "perc50" => "median({x})".into(),
        f => {
            let n: u32 = f.strip_prefix("perc").or_else(|| f.strip_prefix('p'))?.parse().ok().filter(|n| *n <= 100)?;
            format!("approx_percentile_cont({{x}}, {})", n as f64 / 100.0)
        }
    })
}

/// `join [type=inner|left] [max=N] [overwrite=BOOL] fields [subsearch]`: Splunk's defaults are an
/// inner join, at most one subsearch row per main row (the first in the subsearch's order), and
/// the subsearch's values replacing the main row's for fields both have.
fn join(b: &mut Builder, left: Stage, options: &[(String, String)], keys: &[String], sub: &[Command]) -> Result<Stage> {
    let mut kind = "inner";
    let mut max: u64 = 1;
    let mut overwrite = true;
    for (k, v) in options {
        match (k.as_str(), v.to_ascii_lowercase().as_str()) {
            ("type", "inner") => kind = "inner",
            ("type", "left" | "outer") => kind = "left",
            ("max", n) => max = n.parse().map_err(|_| Unsupported(format!("join max={v}")))?,
            ("overwrite", "true" | "t" | "1") => overwrite = true,
            ("overwrite", "false" | "f" | "0") => overwrite = false,
            ("usetime" | "earlier", "false" | "f" | "0") => {}
            _ => return unsupported(format!("join option {k}={v}")),
        }
    }
    let right = pipeline(b, sub)?;
    let keys: Vec<String> = if keys.is_empty() {
        left.fields.iter().filter(|f| right.get(&f.name).is_some()).map(|f| f.name.clone()).collect()
    } else {
        keys.to_vec()
    };
    if keys.is_empty() {
        return unsupported("join without a common field");
    }
    for k in &keys {
        if left.get(k).is_none() || right.get(k).is_none() {
            // Splunk joins nothing on a field one side lacks.
            if kind == "inner" {
                let sql = format!("SELECT * FROM {} WHERE false", left.cte);
                let (fields, order) = (left.fields.clone(), left.order.clone());
                return Ok(b.add(sql, fields, order));
            }
        }
    }
    let order = if right.order.is_empty() { "1".to_string() } else { right.order.iter().map(|o| format!("r.{}", ident(o))).collect::<Vec<_>>().join(", ") };
    let partition: Vec<String> = keys.iter().map(|k| format!("r.{}", ident(k))).collect();
    let ranked = if max == 0 {
        format!("SELECT * FROM {}", right.cte)
    } else {
        format!(
            "SELECT * FROM (SELECT r.*, row_number() OVER (PARTITION BY {} ORDER BY {order}) AS join_rank FROM {} r) ranked WHERE join_rank <= {max}",
            partition.join(", "),
            right.cte
        )
    };
    let ranked_fields: Vec<Field> = right.fields.clone();
    let ranked_stage = b.add(ranked, ranked_fields, right.order.clone());
    let mut select = Vec::new();
    let mut fields = Vec::new();
    for f in &left.fields {
        let both = right.get(&f.name).is_some() && !keys.contains(&f.name);
        let sql = if both && overwrite {
            if f.kind == right.get(&f.name).unwrap().kind {
                format!("coalesce(r.{n}, l.{n})", n = ident(&f.name))
            } else {
                format!("r.{}", ident(&f.name))
            }
        } else {
            format!("l.{}", ident(&f.name))
        };
        let kind = if both && overwrite { right.get(&f.name).unwrap().kind } else { f.kind };
        select.push(format!("{sql} AS {}", ident(&f.name)));
        fields.push(Field { name: f.name.clone(), kind });
    }
    for f in &right.fields {
        if left.get(&f.name).is_none() {
            select.push(format!("r.{n} AS {n}", n = ident(&f.name)));
            fields.push(f.clone());
        }
    }
    let on: Vec<String> = keys.iter().map(|k| format!("l.{n} = r.{n}", n = ident(k))).collect();
    let sql = format!(
        "SELECT {}\nFROM {} l\n{} JOIN {} r ON {}",
        select.join(", "),
        left.cte,
        if kind == "left" { "LEFT" } else { "INNER" },
        ranked_stage.cte,
        on.join(" AND ")
    );
    Ok(b.add(sql, fields, left.order))
}

/// `lookup`: each event takes the first row of the lookup (in file order) whose input columns
/// all match its fields: case-insensitively unless the lookup says `case_sensitive_match`, with
/// `*` wildcards in `WILDCARD(col)` columns and networks in `CIDR(col)` ones. An event matching no
/// row gets `default_match` when the lookup sets `min_matches`, else nulls. OUTPUT replaces the
/// event's fields, OUTPUTNEW only fills missing ones; without either, every other column is
/// output. (Splunk outputs every matching row as a multivalue field; cimlake the first.)
#[allow(clippy::too_many_arguments)]
fn lookup(b: &mut Builder, stage: Stage, options: &[(String, String)], name: &str, inputs: &[(String, String)], outputs: &[(String, String)], new: bool) -> Result<Stage> {
    for (k, v) in options {
        if !matches!(k.as_str(), "update" | "local") {
            return unsupported(format!("lookup option {k}={v}"));
        }
    }
    let Some(def) = b.lookups.by_name.get(name) else { return unsupported(format!("lookup {name} (not in lookups/)")) };
    let (header, rows) = def.read().map_err(Unsupported)?;
    let col = |c: &str| header.iter().position(|h| h == c).ok_or_else(|| Unsupported(format!("lookup {name} has no column {c}")));
    let outputs: Vec<(String, String)> = if outputs.is_empty() {
        header.iter().filter(|h| !inputs.iter().any(|(c, _)| c == *h)).map(|h| (h.clone(), h.clone())).collect()
    } else {
        outputs.to_vec()
    };
    // The table: a row number (file order), every column used, and the LIKE form of wildcards.
    let used: Vec<usize> = inputs.iter().chain(&outputs).map(|(c, _)| col(c)).collect::<Result<Vec<_>>>()?;
    let mut used_cols: Vec<usize> = used.clone();
    used_cols.sort();
    used_cols.dedup();
    let mut names = vec!["lookup_row".to_string()];
    names.extend(used_cols.iter().map(|i| format!("c{i}")));
    names.extend(used_cols.iter().map(|i| format!("w{i}")));
    // CIDR columns: each row's IPv4 network as its first and last address, as numbers.
    let cidr_cols: Vec<usize> = inputs.iter().filter(|(c, _)| def.cidr.contains(c)).map(|(c, _)| col(c)).collect::<Result<Vec<_>>>()?;
    names.extend(cidr_cols.iter().flat_map(|i| [format!("lo{i}"), format!("hi{i}")]));
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let mut v = vec![r.to_string()];
            v.extend(used_cols.iter().map(|i| lit(&row[*i])));
            v.extend(used_cols.iter().map(|i| lit(&lookup_like(&row[*i]))));
            for i in &cidr_cols {
                match ipv4_range(&row[*i]) {
                    Some((lo, hi)) => v.extend([format!("CAST({lo} AS BIGINT)"), format!("CAST({hi} AS BIGINT)")]),
                    None => v.extend(["CAST(NULL AS BIGINT)".to_string(), "CAST(NULL AS BIGINT)".to_string()]),
                }
            }
            format!("({})", v.join(", "))
        })
        .collect();
    if values.is_empty() {
        return unsupported(format!("lookup {name} without rows"));
    }
    let table = b.add(format!("SELECT * FROM (VALUES {}) AS t({})", values.join(",\n    "), names.join(", ")), Vec::new(), Vec::new());
    // Each event numbered, to keep its first matching row.
    let numbered = b.add(format!("SELECT *, row_number() OVER () AS lookup_event FROM {}", stage.cte), stage.fields.clone(), stage.order.clone());
    let fold = |sql: String| if def.case_sensitive { sql } else { format!("lower({sql})") };
    let mut on = Vec::new();
    for (c, field) in inputs {
        let i = col(c)?;
        let Some(f) = stage.get(field) else {
            on.push("false".to_string());
            continue;
        };
        if f.kind == Kind::Multi {
            return unsupported("lookup on a multivalue field");
        }
        let ev = text_of(&format!("e.{}", ident(field)), f.kind, &None);
        on.push(if def.cidr.contains(c) {
            format!("{} BETWEEN k.lo{i} AND k.hi{i}", ipv4_number(&ev))
        } else if def.wildcard.contains(c) {
            format!("{} LIKE {}", fold(ev), fold(format!("k.w{i}")))
        } else {
            format!("{} = {}", fold(ev), fold(format!("k.c{i}")))
        });
    }
    let joined = format!(
        "SELECT * FROM (SELECT e.*, k.*, row_number() OVER (PARTITION BY e.lookup_event ORDER BY k.lookup_row) AS lookup_rank FROM {} e LEFT JOIN {} k ON {}) j WHERE lookup_rank = 1",
        numbered.cte,
        table.cte,
        on.join(" AND ")
    );
    let mut fields = stage.fields.clone();
    let mut select = select_all(&stage);
    let default = def.default_match.as_ref().filter(|_| def.min_matches > 0);
    for (c, field) in &outputs {
        let i = col(c)?;
        let value = match default {
            Some(d) => format!("CASE WHEN lookup_row IS NULL THEN {} ELSE c{i} END", lit(d)),
            None => format!("c{i}"),
        };
        match fields.iter().position(|f| &f.name == field) {
            Some(j) if new => select[j] = format!("coalesce({}, {value}) AS {}", text_of(&ident(field), fields[j].kind, &None), ident(field)),
            Some(j) => {
                select[j] = format!("{value} AS {}", ident(field));
                fields[j].kind = Kind::Text;
            }
            None => {
                select.push(format!("{value} AS {}", ident(field)));
                fields.push(Field { name: field.clone(), kind: Kind::Text });
            }
        }
    }
    let sql = format!("SELECT {} FROM ({joined}) matched", select.join(", "));
    Ok(b.add(sql, fields, stage.order))
}

/// An IPv4 network (`10.0.0.0/8`) or address as its first and last address, as numbers.
fn ipv4_range(s: &str) -> Option<(u64, u64)> {
    let (ip, bits) = match s.trim().split_once('/') {
        Some((ip, bits)) => (ip, bits.parse::<u32>().ok().filter(|b| *b <= 32)?),
        None => (s.trim(), 32),
    };
    let ip = u64::from(u32::from(ip.parse::<std::net::Ipv4Addr>().ok()?));
    let size = 1u64 << (32 - bits);
    let lo = ip & !(size - 1) & 0xFFFF_FFFF;
    Some((lo, lo + size - 1))
}

/// SQL for the number of an IPv4 address in text (null when it is not one).
fn ipv4_number(text: &str) -> String {
    let part = |n: usize| format!("TRY_CAST(split_part({text}, '.', {n}) AS BIGINT)");
    let valid = format!("regexp_like({text}, '^\\d{{1,3}}(\\.\\d{{1,3}}){{3}}$')");
    format!("CASE WHEN {valid} THEN {} * 16777216 + {} * 65536 + {} * 256 + {} END", part(1), part(2), part(3), part(4))
}

/// A lookup value as a `LIKE` pattern: in a `WILDCARD` column `*` is any text; everything else,
/// backslashes included, is itself (`*\\cmd.exe`).
fn lookup_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `rex field=F "…(?<name>…)…"`: each named group becomes a field, set where the regex matches
/// (elsewhere the field keeps its value, as in Splunk).
fn rex(b: &mut Builder, stage: Stage, options: &[(String, String)], pattern: &str) -> Result<Stage> {
    let mut field = "_raw".to_string();
    for (k, v) in options {
        match k.as_str() {
            "field" => field = v.clone(),
            "max_match" if v == "1" => {}
            _ => return unsupported(format!("rex option {k}={v}")),
        }
    }
    if field == "_raw" {
        return unsupported("rex over _raw (the lake keeps fields, not raw events)");
    }
    let re = regex::Regex::new(pattern).map_err(|e| Unsupported(format!("regex the engine cannot compile ({})", e.to_string().lines().last().unwrap_or(""))))?;
    let (src, kind) = stage_field(&stage, &field);
    if kind == Kind::Multi {
        return unsupported("rex on a multivalue field");
    }
    let mut fields = stage.fields.clone();
    let mut select = select_all(&stage);
    // regexp_match gives the capture groups, group 1 first.
    for (i, name) in re.capture_names().enumerate() {
        let Some(name) = name else { continue };
        let value = format!("array_element(regexp_match({src}, {}), {i})", lit(pattern));
        match fields.iter().position(|f| f.name == name) {
            Some(j) => {
                select[j] = format!("coalesce({value}, {}) AS {}", text_of(&ident(name), fields[j].kind, &None), ident(name));
                fields[j].kind = Kind::Text;
            }
            None => {
                select.push(format!("{value} AS {}", ident(name)));
                fields.push(Field { name: name.to_string(), kind: Kind::Text });
            }
        }
    }
    let sql = format!("SELECT {} FROM {}", select.join(", "), stage.cte);
    Ok(b.add(sql, fields, stage.order))
}

/// An eval expression: SQL and the kind of its value.
fn expr(stage: &Stage, e: &Expr) -> Result<(String, Kind)> {
    Ok(match e {
        Expr::Field(f) => stage_field(stage, f),
        Expr::Str(s) => (lit(s), Kind::Text),
        Expr::Num(n) => (n.clone(), Kind::Number),
        Expr::Not(x) => (format!("(NOT {})", boolean(stage, x)?), Kind::Number),
        Expr::Neg(x) => (format!("(-{})", number(stage, x)?), Kind::Number),
        Expr::And(a, b) => (format!("({} AND {})", boolean(stage, a)?, boolean(stage, b)?), Kind::Number),
        Expr::Or(a, b) => (format!("({} OR {})", boolean(stage, a)?, boolean(stage, b)?), Kind::Number),
        Expr::Binary(op, a, b) => match op.as_str() {
            "." => (format!("({} || {})", text(stage, a)?, text(stage, b)?), Kind::Text),
            "+" | "-" | "*" | "/" | "%" => (format!("({} {op} {})", number(stage, a)?, number(stage, b)?), Kind::Number),
            "LIKE" => (format!("({} LIKE {})", text(stage, a)?, like_pattern(stage, b)?), Kind::Number),
            "=" | "!=" | "<" | ">" | "<=" | ">=" => compare(stage, op, a, b)?,
            _ => return unsupported(format!("operator {op}")),
        },
        Expr::Call(name, args) => call(stage, name, args)?,
    })
}

/// A comparison as Splunk's `where` makes it: case-sensitive; numeric when either side is a
/// number; on a multivalue field, true when any value compares.
fn compare(stage: &Stage, op: &str, a: &Expr, b: &Expr) -> Result<(String, Kind)> {
    let (sa, ka) = expr(stage, a)?;
    let (sb, kb) = expr(stage, b)?;
    let sql_op = if op == "=" { "=" } else { op };
    if ka == Kind::Multi || kb == Kind::Multi {
        let (mv, other) = if ka == Kind::Multi { (&sa, (&sb, kb)) } else { (&sb, (&sa, ka)) };
        if other.1 == Kind::Multi || !matches!(op, "=" | "!=") {
            return unsupported(format!("comparison {op} of multivalue fields"));
        }
        let any = format!("array_has({mv}, CAST({} AS VARCHAR))", other.0);
        return Ok((if op == "=" { any } else { format!("(NOT {any})") }, Kind::Number));
    }
    let numeric = ka == Kind::Number || kb == Kind::Number;
    Ok(if numeric {
        (format!("(TRY_CAST({sa} AS DOUBLE) {sql_op} TRY_CAST({sb} AS DOUBLE))"), Kind::Number)
    } else if ka == Kind::Time || kb == Kind::Time {
        (format!("({sa} {sql_op} {sb})"), Kind::Number)
    } else {
        (format!("(CAST({sa} AS VARCHAR) {sql_op} CAST({sb} AS VARCHAR))"), Kind::Number)
    })
}

fn text(stage: &Stage, e: &Expr) -> Result<String> {
    let (sql, kind) = expr(stage, e)?;
    Ok(match kind {
        Kind::Text => sql,
        Kind::Multi => return unsupported("a multivalue field as text"),
        _ => format!("CAST({sql} AS VARCHAR)"),
    })
}

fn number(stage: &Stage, e: &Expr) -> Result<String> {
    let (sql, kind) = expr(stage, e)?;
    Ok(match kind {
        Kind::Number => sql,
        Kind::Multi => return unsupported("a multivalue field as a number"),
        _ => format!("TRY_CAST({sql} AS DOUBLE)"),
    })
}

fn boolean(stage: &Stage, e: &Expr) -> Result<String> {
    Ok(expr(stage, e)?.0)
}

fn call(stage: &Stage, name: &str, args: &[Expr]) -> Result<(String, Kind)> {
    let arity = |n: usize| -> Result<()> {
        if args.len() == n { Ok(()) } else { unsupported(format!("eval function {name} with {} arguments", args.len())) }
    };
    Ok(match name {
        "lower" | "upper" | "trim" | "ltrim" | "rtrim" => {
            arity(1)?;
            (format!("{name}({})", text(stage, &args[0])?), Kind::Text)
        }
        "len" => {
            arity(1)?;
            (format!("character_length({})", text(stage, &args[0])?), Kind::Number)
        }
        "isnull" | "isnotnull" => {
            arity(1)?;
            let (s, _) = expr(stage, &args[0])?;
            (format!("({s} IS {}NULL)", if name == "isnull" { "" } else { "NOT " }), Kind::Number)
        }
        "like" => {
            arity(2)?;
            (format!("({} LIKE {})", text(stage, &args[0])?, like_pattern(stage, &args[1])?), Kind::Number)
        }
        "match" => {
            arity(2)?;
            if let Expr::Str(p) = &args[1] {
                regex::Regex::new(p).map_err(|_| Unsupported("match() with a regex the engine cannot compile".into()))?;
            }
            (format!("regexp_like({}, {})", text(stage, &args[0])?, text(stage, &args[1])?), Kind::Number)
        }
        "if" => {
            arity(3)?;
            let (a, ka) = expr(stage, &args[1])?;
            let (b, kb) = expr(stage, &args[2])?;
            let kind = if ka == kb { ka } else { Kind::Text };
            let (a, b) = if ka == kb { (a, b) } else { (format!("CAST({a} AS VARCHAR)"), format!("CAST({b} AS VARCHAR)")) };
            (format!("CASE WHEN coalesce({}, false) THEN {a} ELSE {b} END", boolean(stage, &args[0])?), kind)
        }
        "case" => {
            if !args.len().is_multiple_of(2) || args.is_empty() {
                return unsupported("eval function case with an odd number of arguments");
            }
            let mut sql = String::from("CASE");
            for pair in args.chunks(2) {
                sql.push_str(&format!(" WHEN coalesce({}, false) THEN {}", boolean(stage, &pair[0])?, text(stage, &pair[1])?));
            }
            (sql + " END", Kind::Text)
        }
        "coalesce" => {
            let parts = args.iter().map(|a| text(stage, a)).collect::<Result<Vec<_>>>()?;
            (format!("coalesce({})", parts.join(", ")), Kind::Text)
        }
        "tonumber" => {
            arity(1)?;
            (format!("TRY_CAST({} AS DOUBLE)", text(stage, &args[0])?), Kind::Number)
        }
        "tostring" => {
            arity(1)?;
            (text(stage, &args[0])?, Kind::Text)
        }
        "replace" => {
            arity(3)?;
            (format!("regexp_replace({}, {}, {}, 'g')", text(stage, &args[0])?, text(stage, &args[1])?, replacement(stage, &args[2])?), Kind::Text)
        }
        "substr" => {
            let s = text(stage, &args[0])?;
            match args.len() {
                2 => (format!("substr({s}, {})", number_int(stage, &args[1])?), Kind::Text),
                3 => (format!("substr({s}, {}, {})", number_int(stage, &args[1])?, number_int(stage, &args[2])?), Kind::Text),
                _ => return unsupported("eval function substr with other arguments"),
            }
        }
        "split" => {
            arity(2)?;
            (format!("string_to_array({}, {})", text(stage, &args[0])?, text(stage, &args[1])?), Kind::Multi)
        }
        "mvcount" => {
            arity(1)?;
            let (s, k) = expr(stage, &args[0])?;
            match k {
                Kind::Multi => (format!("cardinality({s})"), Kind::Number),
                _ => (format!("CASE WHEN {s} IS NULL THEN NULL ELSE 1 END"), Kind::Number),
            }
        }
        "mvindex" => {
            if args.len() != 2 {
                return unsupported("eval function mvindex with a range");
            }
            let (s, k) = expr(stage, &args[0])?;
            let i = number_int(stage, &args[1])?;
            match k {
                // Splunk counts from 0, and from the end when negative.
                Kind::Multi => (format!("CASE WHEN {i} >= 0 THEN array_element({s}, {i} + 1) ELSE array_element({s}, CAST(cardinality({s}) AS BIGINT) + {i} + 1) END"), Kind::Text),
                _ => (format!("CASE WHEN {i} = 0 OR {i} = -1 THEN CAST({s} AS VARCHAR) END"), Kind::Text),
            }
        }
        "cidrmatch" => {
            arity(2)?;
            (format!("coalesce(cidr_match({}, {}), false)", text(stage, &args[1])?, text(stage, &args[0])?), Kind::Number)
        }
        "round" => match args.len() {
            1 => (format!("round({})", number(stage, &args[0])?), Kind::Number),
            2 => (format!("round({}, {})", number(stage, &args[0])?, number_int(stage, &args[1])?), Kind::Number),
            _ => return unsupported("eval function round with other arguments"),
        },
        "abs" => {
            arity(1)?;
            (format!("abs({})", number(stage, &args[0])?), Kind::Number)
        }
        "now" | "time" => ("now()".to_string(), Kind::Time),
        "strftime" => {
            arity(2)?;
            let (t, k) = expr(stage, &args[0])?;
            let t = match k {
                Kind::Time => t,
                Kind::Number => format!("to_timestamp_seconds(CAST({t} AS BIGINT))"),
                _ => return unsupported("strftime of a text"),
            };
            (format!("to_char({t}, {})", text(stage, &args[1])?), Kind::Text)
        }
        "true" | "false" => {
            arity(0)?;
            (name.to_uppercase(), Kind::Number)
        }
        "null" => {
            arity(0)?;
            ("CAST(NULL AS VARCHAR)".to_string(), Kind::Text)
        }
        other => return unsupported(format!("eval function {other}")),
    })
}

/// A `like()` pattern: `%` and `_` are its wildcards and a backslash is itself (Splunk's
/// `like(path, "%\\windows\\%")` matches `C:\windows\x`); the engine's `LIKE` reads `\` as an
/// escape, so a literal pattern's backslashes are doubled.
fn like_pattern(stage: &Stage, e: &Expr) -> Result<String> {
    match e {
        Expr::Str(p) => Ok(lit(&p.replace('\\', "\\\\"))),
        _ => text(stage, e),
    }
}

/// A `replace()` replacement: Splunk writes groups `\1`, the engine `${1}`.
fn replacement(stage: &Stage, e: &Expr) -> Result<String> {
    match e {
        Expr::Str(s) => {
            static GROUP: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
            Ok(lit(&GROUP.get_or_init(|| regex::Regex::new(r"\\(\d)").expect("regex")).replace_all(s, "$${$1}")))
        }
        _ => text(stage, e),
    }
}

fn number_int(stage: &Stage, e: &Expr) -> Result<String> {
    Ok(format!("CAST({} AS BIGINT)", number(stage, e)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_ranges() {
        assert_eq!(ipv4_range("10.0.0.0/31"), Some((167772160, 167772161)));
        assert_eq!(ipv4_range("10.1.2.3"), Some((167838211, 167838211)));
        assert_eq!(ipv4_range("10.1.2.3/8"), Some((167772160, 184549375)));
        assert_eq!(ipv4_range("::1/128"), None);
        assert_eq!(ipv4_range("10.0.0.0/33"), None);
    }

    #[test]
    fn globs_and_values() {
        assert_eq!(glob("Processes.*", "Processes.dest"), Some(vec!["dest".to_string()]));
        assert_eq!(glob("Processes.*", "dest"), None);
        assert_eq!(glob("RTLO*", "RTLO_command_1"), Some(vec!["_command_1".to_string()]));
        assert_eq!(glob("a*b*c", "aXbYc"), Some(vec!["X".to_string(), "Y".to_string()]));
        assert_eq!(search_value("msiexec.exe"), ("msiexec.exe".to_string(), None));
        assert_eq!(search_value(r#""*\\Windows\\*""#), (r"\Windows\".to_string(), Some(r"%\\Windows\\%".to_string())));
        assert_eq!(search_value(r"a\*b_%"), ("a*b_%".to_string(), None));
        assert_eq!(search_value("*_x*"), ("_x".to_string(), Some(r"%\_x%".to_string())));
        assert_eq!(interval("5m").unwrap(), "INTERVAL '5 minute'");
        assert!(interval("1mon").is_err());
    }
}
