//! FlyteAdmin's filter grammar for `ListProjects` (`flyteadmin/pkg/manager/impl/util/filters.go`).
//!
//! A filter string is one or more expressions joined by `+`, each `op(field,value)` with an
//! optional space after the comma: `eq(state,0)+contains(name,flyte)`. `value_in` and
//! `value_not_in` take a `;`-separated list: `value_in(state,0;1)`. Fields may carry Flyte's
//! `project.` entity prefix. Values are only ever bound as SQL parameters.

use super::StoreError;

/// A comparison operator of the filter grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `gt`: greater than (state only).
    Gt,
    /// `gte`: greater than or equal (state only).
    Gte,
    /// `lt`: less than (state only).
    Lt,
    /// `lte`: less than or equal (state only).
    Lte,
    /// `contains`: case-sensitive substring match (text fields only).
    Contains,
    /// `value_in`: equal to one of a `;`-separated list.
    ValueIn,
    /// `value_not_in`: equal to none of a `;`-separated list.
    ValueNotIn,
}

/// A project column that filters may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    /// `id` or `identifier`.
    Identifier,
    /// `name`.
    Name,
    /// `description`.
    Description,
    /// `state`: the `ProjectState` enum value, an integer.
    State,
}

/// A value a filter compares against, already typed for its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterValue {
    /// A value for a text field.
    Text(String),
    /// A value for `state`.
    Int(i32),
}

/// One parsed `op(field,value)` expression. `values` holds exactly one value except for
/// `value_in` / `value_not_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The column compared.
    pub field: FilterField,
    /// The comparison.
    pub op: FilterOp,
    /// The operand(s), typed for `field`.
    pub values: Vec<FilterValue>,
}

/// Parses a filter string; an empty (or all-blank) string means no filters.
///
/// Unknown operators or fields, malformed expressions, empty values, a non-integer `state`
/// and operators that do not apply to the field are `StoreError::Invalid`, naming the part.
pub fn parse_filters(input: &str) -> Result<Vec<Filter>, StoreError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    input.split('+').map(parse_expression).collect()
}

fn parse_expression(expr: &str) -> Result<Filter, StoreError> {
    let expr = expr.trim();
    let malformed = || invalid(format!("malformed filter expression '{}'", clip(expr)));
    let (op, rest) = expr.split_once('(').ok_or_else(malformed)?;
    let inner = rest.strip_suffix(')').ok_or_else(malformed)?;
    let (field, value) = inner.split_once(',').ok_or_else(malformed)?;
    // Flyte's regex allows one optional space after the comma.
    let value = value.strip_prefix(' ').unwrap_or(value);

    let op_name = op.trim();
    let op = match op_name {
        "eq" => FilterOp::Eq,
        "ne" => FilterOp::Ne,
        "gt" => FilterOp::Gt,
        "gte" => FilterOp::Gte,
        "lt" => FilterOp::Lt,
        "lte" => FilterOp::Lte,
        "contains" => FilterOp::Contains,
        "value_in" => FilterOp::ValueIn,
        "value_not_in" => FilterOp::ValueNotIn,
        other => {
            return Err(invalid(format!(
                "unknown filter operator '{}'",
                clip(other)
            )))
        }
    };
    let field_name = field.trim();
    let field = match field_name.strip_prefix("project.").unwrap_or(field_name) {
        "id" | "identifier" => FilterField::Identifier,
        "name" => FilterField::Name,
        "description" => FilterField::Description,
        "state" => FilterField::State,
        _ => {
            return Err(invalid(format!(
                "unknown filter field '{}'",
                clip(field_name)
            )))
        }
    };

    let is_state = field == FilterField::State;
    let ordering = matches!(
        op,
        FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte
    );
    if ordering && !is_state {
        return Err(invalid(format!(
            "operator '{op_name}' applies only to state"
        )));
    }
    if op == FilterOp::Contains && is_state {
        return Err(invalid(format!(
            "operator '{op_name}' does not apply to state"
        )));
    }

    let raw: Vec<&str> = match op {
        FilterOp::ValueIn | FilterOp::ValueNotIn => value.split(';').collect(),
        _ => vec![value],
    };
    let values = raw
        .into_iter()
        .map(|v| typed_value(field, field_name, v))
        .collect::<Result<_, _>>()?;
    Ok(Filter { field, op, values })
}

fn typed_value(field: FilterField, name: &str, value: &str) -> Result<FilterValue, StoreError> {
    if value.is_empty() {
        return Err(invalid(format!(
            "empty value for filter field '{}'",
            clip(name)
        )));
    }
    if field != FilterField::State {
        return Ok(FilterValue::Text(value.to_owned()));
    }
    value.trim().parse().map(FilterValue::Int).map_err(|_| {
        invalid(format!(
            "state filter value '{}' is not an integer",
            clip(value)
        ))
    })
}

fn invalid(msg: String) -> StoreError {
    StoreError::Invalid(msg)
}

/// Keeps error messages short when a caller sends something long.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A parameter to bind, in order, to the SQL built by [`push_where`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// SQL spelling that differs between the backends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `f(haystack, needle)`: 1-based position of `needle`, 0 when absent. Used for `contains`
    /// instead of `LIKE`, which is case-insensitive in SQLite but not in PostgreSQL, and which
    /// would need `%`/`_` escaping.
    fn position_fn(self) -> &'static str {
        match self {
            Dialect::Sqlite => "instr",
            Dialect::Postgres => "strpos",
        }
    }
}

/// Appends ` AND <condition>` for each filter to `sql`, with `$n` placeholders numbered after
/// the parameters already in `args` (SQLite accepts `$n` too), pushing the values to `args`.
pub(crate) fn push_where(sql: &mut String, args: &mut Vec<Arg>, filters: &[Filter], d: Dialect) {
    for f in filters {
        let column = match f.field {
            FilterField::Identifier => "identifier",
            FilterField::Name => "name",
            FilterField::Description => "description",
            FilterField::State => "state",
        };
        let mut placeholders = Vec::with_capacity(f.values.len());
        for v in &f.values {
            args.push(match v {
                FilterValue::Text(s) => Arg::Text(s.clone()),
                FilterValue::Int(i) => Arg::Int(i64::from(*i)),
            });
            placeholders.push(format!("${}", args.len()));
        }
        let p = placeholders.join(", ");
        let condition = match f.op {
            FilterOp::Eq => format!("{column} = {p}"),
            FilterOp::Ne => format!("{column} <> {p}"),
            FilterOp::Gt => format!("{column} > {p}"),
            FilterOp::Gte => format!("{column} >= {p}"),
            FilterOp::Lt => format!("{column} < {p}"),
            FilterOp::Lte => format!("{column} <= {p}"),
            FilterOp::Contains => format!("{}({column}, {p}) > 0", d.position_fn()),
            FilterOp::ValueIn => format!("{column} IN ({p})"),
            FilterOp::ValueNotIn => format!("{column} NOT IN ({p})"),
        };
        sql.push_str(" AND ");
        sql.push_str(&condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Filter {
        let mut v = parse_filters(s).expect(s);
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    fn err(s: &str) -> String {
        match parse_filters(s) {
            Err(StoreError::Invalid(m)) => m,
            other => panic!("{s}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_means_no_filters() {
        assert_eq!(parse_filters("").unwrap(), vec![]);
        assert_eq!(parse_filters("  ").unwrap(), vec![]);
    }

    #[test]
    fn parses_the_flyte_forms() {
        let f = one("eq(state,0)");
        assert_eq!((f.field, f.op), (FilterField::State, FilterOp::Eq));
        assert_eq!(f.values, vec![FilterValue::Int(0)]);

        let f = one("contains(name, flyte)");
        assert_eq!((f.field, f.op), (FilterField::Name, FilterOp::Contains));
        assert_eq!(f.values, vec![FilterValue::Text("flyte".into())]);

        assert_eq!(one("eq(id,p1)").field, FilterField::Identifier);
        assert_eq!(one("eq(identifier,p1)").field, FilterField::Identifier);
        assert_eq!(one("eq(project.name,x)").field, FilterField::Name);
        assert_eq!(one("ne(description,d)").field, FilterField::Description);
        assert_eq!(one("lte(state,1)").op, FilterOp::Lte);

        let f = one("value_in(state,0;2)");
        assert_eq!(f.values, vec![FilterValue::Int(0), FilterValue::Int(2)]);
        // Only the list operators split on ';'; a comma after the first belongs to the value.
        assert_eq!(
            one("eq(name,a;b)").values,
            vec![FilterValue::Text("a;b".into())]
        );
        assert_eq!(
            one("eq(name,a,b)").values,
            vec![FilterValue::Text("a,b".into())]
        );

        let all = parse_filters("ne(state,1)+contains(name,flyte)").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].op, FilterOp::Contains);
    }

    #[test]
    fn rejects_bad_filters_naming_the_part() {
        assert!(err("like(name,x)").contains("'like'"));
        assert!(err("eq(owner,x)").contains("'owner'"));
        assert!(err("eq(state,active)").contains("'active'"));
        assert!(err("eq(state,1.5)").contains("not an integer"));
        assert!(err("value_in(state,0;x)").contains("'x'"));
        assert!(err("eq(name)").contains("malformed"));
        assert!(err("eq name,x").contains("malformed"));
        assert!(err("eq(name,x").contains("malformed"));
        assert!(err("eq(name,)").contains("empty value"));
        assert!(err("eq(state,0)+").contains("malformed"));
        assert!(err("gt(name,a)").contains("'gt' applies only to state"));
        assert!(err("contains(state,1)").contains("does not apply"));
        let long = format!("eq({},x)", "f".repeat(500));
        assert!(err(&long).len() < 120, "messages stay short");
    }

    #[test]
    fn builds_sql_with_numbered_placeholders_only() {
        let filters = parse_filters("contains(name,50%_off)+value_not_in(state,1;3)").unwrap();
        let mut sql = String::from("org = $1");
        let mut args = vec![Arg::Text(String::new())];
        push_where(&mut sql, &mut args, &filters, Dialect::Postgres);
        assert_eq!(
            sql,
            "org = $1 AND strpos(name, $2) > 0 AND state NOT IN ($3, $4)"
        );
        assert_eq!(args[1], Arg::Text("50%_off".into()));
        assert_eq!(args[2..], [Arg::Int(1), Arg::Int(3)]);

        let mut sql = String::new();
        push_where(&mut sql, &mut Vec::new(), &filters[..1], Dialect::Sqlite);
        assert_eq!(sql, " AND instr(name, $1) > 0");
    }
}
