-- SQLite has no stored functions: there the scaling decision is computed in
-- Rust only (src/scale/decision). This pair keeps both folders numbered alike.
SELECT 1;
