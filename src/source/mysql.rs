//! MySQL and MariaDB through sqlx's MySQL driver: how their errors read and how their cells
//! decode. Both speak the same protocol; `mariadb://` URLs are read as `mysql://` ones, with
//! the same settings (`ssl-mode`, `ssl-ca`, `charset`, `socket`, ...). The connection's
//! character set is utf8mb4, so text columns arrive as UTF-8.

use std::borrow::Cow;

use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlDatabaseError, MySqlRow, MySqlSslMode};
use sqlx::{Row, ValueRef};

use super::sql::{Cell, Dialect};

/// What a column holds, from its MySQL type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `CHAR`, `VARCHAR`, `TEXT`s, `ENUM`, `SET`.
    Text,
    /// `BINARY`, `VARBINARY`, `BLOB`s.
    Bytes,
    Int,
    UInt,
    Float,
    Double,
    /// `TINYINT(1)`.
    Bool,
    /// `DECIMAL` and `JSON`, which the server sends as text.
    AsText,
    /// Dates, times, bits, geometry: a rule's query casts them (`CAST(x AS CHAR)`).
    Other,
}

impl Dialect for MySql {
    type Kind = Kind;

    const TLS_SETTINGS: &'static str = "`ssl-mode` and `ssl-ca`";

    fn address(options: &MySqlConnectOptions) -> String {
        match options.get_socket() {
            Some(socket) => format!("MySQL at `{}`", socket.display()),
            None => format!("MySQL at {}:{}", options.get_host(), options.get_port()),
        }
    }

    fn host(options: &MySqlConnectOptions) -> &str {
        options.get_host()
    }

    fn describe_database(
        db: &dyn sqlx::error::DatabaseError,
        options: &MySqlConnectOptions,
    ) -> (String, bool) {
        let at = Self::address(options);
        let number = db.try_downcast_ref::<MySqlDatabaseError>().map_or(0, MySqlDatabaseError::number);
        let user = options.get_username();
        let database = options.get_database().unwrap_or("");
        let message = match number {
            // A server that requires TLS refuses a plain connection with this error too.
            1045 if matches!(options.get_ssl_mode(), MySqlSslMode::Disabled) => format!(
                "access denied for user `{user}` at {at} ({}): check the password, and whether the \
                 server requires TLS (`ssl-mode=REQUIRED` in the URL, not `DISABLED`)",
                db.message()
            ),
            1045 => format!(
                "access denied for user `{user}` at {at} ({}): check the password (in the URL, or \
                 the variable or file it names) and the hosts the server lets the user connect from",
                db.message()
            ),
            1044 => format!(
                "user `{user}` may not use database `{database}` at {at}: grant it (`GRANT SELECT ON \
                 {database}.* TO ...`) or check the URL's path"
            ),
            1049 => format!("database `{database}` does not exist at {at}: check the URL's path"),
            1054 | 1052 | 1064 | 1146 | 1305 | 1630 => {
                format!("the rule's query is wrong: {}", db.message())
            }
            1142 | 1143 => {
                format!("the rule's query is refused: {} (grant the user SELECT on it)", db.message())
            }
            _ => db.message().to_string(),
        };
        // Too many connections, a server shutting down, a lock wait, a deadlock, a
        // killed connection or query: may pass.
        let retryable = matches!(number, 1040 | 1053 | 1205 | 1213 | 1317 | 1927);
        (message, retryable)
    }

    fn kind(type_name: &str) -> Kind {
        let unsigned = type_name.ends_with(" UNSIGNED");
        match type_name.trim_end_matches(" UNSIGNED") {
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
                Kind::Text
            }
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Kind::Bytes,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" if unsigned => Kind::UInt,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Kind::Int,
            "BOOLEAN" => Kind::Bool,
            "FLOAT" => Kind::Float,
            "DOUBLE" => Kind::Double,
            "DECIMAL" | "JSON" => Kind::AsText,
            _ => Kind::Other,
        }
    }

    fn readable(kind: Kind) -> bool {
        kind != Kind::Other
    }

    fn cell(row: &MySqlRow, i: usize, kind: Kind) -> Cell<'_> {
        let Ok(raw) = row.try_get_raw(i) else { return Cell::Null };
        if raw.is_null() {
            return Cell::Null;
        }
        let decoded = match kind {
            Kind::Text => row.try_get::<&str, _>(i).ok().map(|s| Cell::Text(s.as_bytes())),
            Kind::Bytes => row.try_get::<&[u8], _>(i).ok().map(|b| Cell::Bytes(Cow::Borrowed(b))),
            Kind::Int => row.try_get::<i64, _>(i).ok().map(Cell::Int),
            Kind::UInt => row.try_get::<u64, _>(i).ok().map(Cell::UInt),
            Kind::Float => row.try_get::<f32, _>(i).ok().map(|f| Cell::Float(f.into())),
            Kind::Double => row.try_get::<f64, _>(i).ok().map(Cell::Float),
            Kind::Bool => row.try_get::<bool, _>(i).ok().map(Cell::Bool),
            // Sent as text whatever the column's flags say, so read without sqlx's type check.
            Kind::AsText => row.try_get_unchecked::<&str, _>(i).ok().map(|s| Cell::Str(Cow::Borrowed(s))),
            Kind::Other => None,
        };
        if let Some(cell) = decoded {
            return cell;
        }
        row.try_get::<Vec<u8>, _>(i).map_or(Cell::Null, |b| Cell::Bytes(Cow::Owned(b)))
    }
}
