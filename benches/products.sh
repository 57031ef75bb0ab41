# Shared by the warm benchmarks (sourced, not run): one `product` rule over a products table,
# a log with one request per key, and that table in SQLite.

# products_log N: one combined-format line per product 1..N, so every key is in the profile.
products_log() {
  awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++)
    printf "10.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /api/products/%d HTTP/1.1\" 200 1024 \"-\" \"bench\"\n", i }'
}

# products_db FILE N BYTES: a SQLite table of N products with BYTES-byte bodies.
products_db() {
  sqlite3 "$1" "CREATE TABLE products (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
    INSERT INTO products SELECT i, hex(randomblob($3 / 2)) FROM n;"
}

# products_config SOURCE_URL KEYS [BATCH] [INVALIDATIONS]: the config that warms them.
products_config() {
  cat <<EOF
[analyze]
max_keys_per_rule = 5000000
[warm]
max_keys = $2
batch_size = ${3:-500}
invalidations = "${4:-verify}"
[sources.db]
url = "$1"
[[rule]]
name = "product"
match = "GET /api/products/{id:int}"
key = "product:{id}"
source = "db"
sql = "SELECT id, body FROM products WHERE id IN (\$1)"
encoding = "text"
ttl = "1h"
EOF
}
