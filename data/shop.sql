-- The demo shop's database (SQLite). `preheat demo` builds data/shop.db from it.
-- Ids and slugs follow what `preheat generate-log` writes for data/preheat.toml's rules.
-- Every twentieth product is missing, so a warm reports keys the database does not have.
DROP TABLE IF EXISTS products;
DROP TABLE IF EXISTS categories;
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS pages;

CREATE TABLE products (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE categories (slug TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL);
CREATE TABLE pages (path TEXT PRIMARY KEY, html TEXT NOT NULL);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO products
SELECT i, json_object('id', i, 'name', 'Product ' || i, 'price_cents', 199 + (i * 37) % 9800)
FROM n WHERE i % 20 != 0;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO categories
SELECT 'item-' || i || '-0', json_object('slug', 'item-' || i || '-0', 'products', (i * 13) % 400)
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO users SELECT i, 'user ' || i, CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO pages
SELECT 'section' || (i % 10) || '/page-' || i || '.html', '<h1>Page ' || i || '</h1>'
FROM n;
