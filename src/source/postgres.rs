//! PostgreSQL through sqlx: how its errors read and how its cells decode.

use std::borrow::Cow;

use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgRow, Postgres};
use sqlx::{Row, ValueRef};

use super::sql::{Cell, Dialect};

/// What a column holds, from its PostgreSQL type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Bytes,
    /// Anything else (`numeric`, `uuid`, `jsonb`, dates, ...): tried as text and as bytes,
    /// which its binary form is not; a rule's query casts it (`::text`).
    Other,
}

impl Dialect for Postgres {
    type Kind = Kind;

    const TLS_SETTINGS: &'static str = "`sslmode` and `sslrootcert`";

    fn address(options: &PgConnectOptions) -> String {
        match options.get_socket() {
            Some(socket) => format!("PostgreSQL at `{}`", socket.display()),
            None => format!("PostgreSQL at {}:{}", options.get_host(), options.get_port()),
        }
    }

    fn host(options: &PgConnectOptions) -> &str {
        options.get_host()
    }

    /// The server's own message is used, never its source file and line (sqlx's `Display`
    /// adds "at line N", which reads like a place in the user's config).
    fn describe_database(db: &dyn sqlx::error::DatabaseError, options: &PgConnectOptions) -> (String, bool) {
        let at = Self::address(options);
        let code = db.code().unwrap_or_default();
        let user = options.get_username();
        let database = options.get_database().unwrap_or(user);
        let message = match code.as_ref() {
            "28P01" | "28000" => format!(
                "authentication failed for user `{user}` at {at}: check the password (in the URL, or \
                 the variable or file it names) and the server's pg_hba.conf"
            ),
            "3D000" => format!("database `{database}` does not exist at {at}: check the URL's path"),
            "42P01" | "42703" | "42601" | "42883" => {
                let position = db
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(|pg| match pg.position() {
                        Some(sqlx::postgres::PgErrorPosition::Original(n)) => Some(n),
                        _ => None,
                    })
                    .map_or(String::new(), |n| format!(" (at character {n} of the rule's query)"));
                format!("the rule's query is wrong: {}{position}", db.message())
            }
            _ => db.message().to_string(),
        };
        // Too many connections, a server starting or shutting down: may pass.
        let retryable = matches!(code.as_ref(), "53300" | "57P01" | "57P02" | "57P03" | "40001" | "40P01");
        (message, retryable)
    }

    fn kind(type_name: &str) -> Kind {
        const NAMES: [(&str, Kind); 13] = [
            ("TEXT", Kind::Text),
            ("CITEXT", Kind::Text),
            ("VARCHAR", Kind::Text),
            ("BPCHAR", Kind::Text),
            ("CHAR", Kind::Text),
            ("NAME", Kind::Text),
            ("INT8", Kind::Int8),
            ("INT4", Kind::Int4),
            ("INT2", Kind::Int2),
            ("FLOAT4", Kind::Float4),
            ("FLOAT8", Kind::Float8),
            ("BOOL", Kind::Bool),
            ("BYTEA", Kind::Bytes),
        ];
        NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(type_name)).map_or(Kind::Other, |(_, k)| *k)
    }

    fn readable(kind: Kind) -> bool {
        kind != Kind::Other
    }

    fn cell(row: &PgRow, i: usize, kind: Kind) -> Cell<'_> {
        let Ok(raw) = row.try_get_raw(i) else { return Cell::Null };
        if raw.is_null() {
            return Cell::Null;
        }
        let decoded = match kind {
            // Text arrives in the connection's client encoding, UTF-8.
            Kind::Text => raw.as_bytes().ok().map(Cell::Text),
            Kind::Bytes => row.try_get::<&[u8], _>(i).ok().map(|b| Cell::Bytes(Cow::Borrowed(b))),
            Kind::Int8 => row.try_get::<i64, _>(i).ok().map(Cell::Int),
            Kind::Int4 => row.try_get::<i32, _>(i).ok().map(|n| Cell::Int(n.into())),
            Kind::Int2 => row.try_get::<i16, _>(i).ok().map(|n| Cell::Int(n.into())),
            Kind::Float4 => row.try_get::<f32, _>(i).ok().map(|f| Cell::Float(f.into())),
            Kind::Float8 => row.try_get::<f64, _>(i).ok().map(Cell::Float),
            Kind::Bool => row.try_get::<bool, _>(i).ok().map(Cell::Bool),
            Kind::Other => None,
        };
        if let Some(cell) = decoded {
            return cell;
        }
        if let Ok(v) = row.try_get::<String, _>(i) {
            return Cell::Bytes(Cow::Owned(v.into_bytes()));
        }
        row.try_get::<Vec<u8>, _>(i).map_or(Cell::Null, |b| Cell::Bytes(Cow::Owned(b)))
    }
}
