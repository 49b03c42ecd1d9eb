-- SQLite has no stored functions: the idle-aware p95 of the PostgreSQL pair
-- lives in src/scale/window.rs. This pair keeps both folders numbered alike.
SELECT 1;
