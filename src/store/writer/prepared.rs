//! Raw SQL that PostgreSQL prepares once per connection and plans from its cache.
//!
//! Diesel's `sql_query` marks every statement as unsafe to cache (its text could be built at run
//! time), so each call of a batch statement was parsed and planned again: about a third of a
//! millisecond of planning for the seq reservation alone, on every batch. The batch statements
//! are fixed texts, so [`Prepared`] sends them as named prepared statements instead: the
//! connection's statement cache keeps them by text, and PostgreSQL may settle on a generic plan
//! for them (their parameters are arrays, whose values never change the plan).

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A fixed SQL text whose parameters `$1`, `$2`, ... appear once each, in this order (anything
/// else fails), with their values.
pub(super) struct Prepared<B> {
    sql: &'static str,
    binds: B,
}

/// One parameter's value, with its SQL type.
pub(super) struct Bind<ST, V> {
    value: V,
    _type: PhantomData<ST>,
}

/// The parameter `value` of SQL type `ST`.
pub(super) fn bind<ST, V>(value: V) -> Bind<ST, V> {
    Bind {
        value,
        _type: PhantomData,
    }
}

/// The parameters of a [`Prepared`] statement, pushed one at a time where their placeholders
/// stand.
pub(super) trait Binds {
    /// Pushes parameter `index` (from 0).
    fn push<'b>(&'b self, index: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

macro_rules! binds {
    ($($name:ident $index:tt),+) => {
        impl<$($name),+> Binds for ($($name,)+)
        where
            $($name: PushOne,)+
        {
            fn push<'b>(&'b self, index: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                match index {
                    $($index => self.$index.push_one(out),)+
                    _ => Err(diesel::result::Error::QueryBuilderError(
                        format!("no parameter ${}", index + 1).into(),
                    )),
                }
            }
        }
    };
}

/// One parameter, whatever its type: what the tuples of [`Binds`] hold.
pub(super) trait PushOne {
    /// Pushes the parameter.
    fn push_one<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl<ST, V> PushOne for Bind<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn push_one<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

binds!(A 0, B 1);
binds!(A 0, B 1, C 2);
binds!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
binds!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);

impl<B> Prepared<B> {
    /// `sql` with `binds` for its placeholders, in order.
    pub(super) fn new(sql: &'static str, binds: B) -> Prepared<B> {
        Prepared { sql, binds }
    }
}

impl<B: Binds> QueryFragment<Pg> for Prepared<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql;
        let mut index = 0;
        // Each `$<digits>` is replaced by the placeholder Diesel writes for the next parameter,
        // which is the same text, since they appear in order.
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits == 0 {
                out.push_sql(&rest[..=at]);
                rest = &rest[at + 1..];
                continue;
            }
            // Diesel numbers placeholders in the order they are pushed.
            let number = &rest[at + 1..at + 1 + digits];
            if number.parse::<usize>().ok() != Some(index + 1) {
                return Err(diesel::result::Error::QueryBuilderError(
                    format!("${number} where ${} was expected", index + 1).into(),
                ));
            }
            out.push_sql(&rest[..at]);
            self.binds.push(index, &mut out)?;
            index += 1;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<B> QueryId for Prepared<B> {
    type QueryId = ();
    // Cached by its text, which is fixed.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Prepared<B> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Array, BigInt, Text};

    use super::*;

    #[test]
    fn the_text_is_sent_as_written_with_its_parameters_in_order() {
        let query = Prepared::new(
            "SELECT $1::bigint, x FROM unnest($2::text[]) AS t(x) WHERE '$' <> $3",
            (
                bind::<BigInt, _>(7_i64),
                bind::<Array<Text>, _>(vec!["a", "b"]),
                bind::<Text, _>("c"),
            ),
        );
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with(
                "SELECT $1::bigint, x FROM unnest($2::text[]) AS t(x) WHERE '$' <> $3 -- binds: [7, [\"a\", \"b\"], \"c\"]"
            ),
            "{sql}"
        );
    }

    #[test]
    fn parameters_out_of_order_are_refused() {
        let query = Prepared::new(
            "SELECT $2, $1",
            (bind::<BigInt, _>(1_i64), bind::<BigInt, _>(2_i64)),
        );
        let mut builder = diesel::pg::PgQueryBuilder::default();
        assert!(QueryFragment::<Pg>::to_sql(&query, &mut builder, &Pg).is_err());
    }
}
