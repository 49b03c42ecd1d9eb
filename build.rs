//! Embeds the SQL migrations into the binary.
//!
//! Every `migrations/<backend>/<NNNN>_<name>.up.sql` with its `.down.sql` twin
//! becomes one entry of a generated table that `src/store/migrate.rs` includes,
//! so a new numbered pair is picked up without touching the code, and a
//! migration missing its other half fails the build rather than a deployment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

const BACKENDS: [(&str, &str); 2] = [("postgres", "POSTGRES"), ("sqlite", "SQLITE")];

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut out = String::new();
    for (folder, constant) in BACKENDS {
        let pairs = pairs(&root.join("migrations").join(folder));
        writeln!(
            out,
            "pub(super) const {constant}: &[EmbeddedMigration] = &["
        )
        .expect("writing to a String cannot fail");
        for ((version, description), (up, down)) in pairs {
            writeln!(
                out,
                "    EmbeddedMigration {{ version: {version}, description: {description:?}, up: include_str!({up:?}), down: include_str!({down:?}) }},",
                up = up.display().to_string(),
                down = down.display().to_string(),
            )
            .expect("writing to a String cannot fail");
        }
        out.push_str("];\n");
    }
    let dest =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}

/// The `(version, description) -> (up, down)` pairs of one folder, in version order.
fn pairs(dir: &Path) -> BTreeMap<(i64, String), (PathBuf, PathBuf)> {
    let mut ups = BTreeMap::new();
    let mut downs = BTreeMap::new();
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let (stem, is_up) = if let Some(stem) = name.strip_suffix(".up.sql") {
            (stem, true)
        } else if let Some(stem) = name.strip_suffix(".down.sql") {
            (stem, false)
        } else {
            continue;
        };
        let (number, description) = stem
            .split_once('_')
            .unwrap_or_else(|| panic!("{name}: expected NNNN_name.up.sql or .down.sql"));
        let version: i64 = number
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {number:?} is not a migration number"));
        let key = (version, description.to_owned());
        let previous = if is_up {
            ups.insert(key, path.clone())
        } else {
            downs.insert(key, path.clone())
        };
        assert!(previous.is_none(), "{name}: duplicate migration");
    }
    let mut pairs = BTreeMap::new();
    for (key, up) in ups {
        let down = downs.remove(&key).unwrap_or_else(|| {
            panic!(
                "{}: migration {:04}_{} has no .down.sql",
                dir.display(),
                key.0,
                key.1
            )
        });
        pairs.insert(key, (up, down));
    }
    if let Some(((version, description), _)) = downs.into_iter().next() {
        panic!(
            "{}: migration {version:04}_{description} has no .up.sql",
            dir.display()
        );
    }
    let mut versions: Vec<i64> = pairs.keys().map(|(v, _)| *v).collect();
    versions.dedup();
    assert_eq!(
        versions.len(),
        pairs.len(),
        "{}: two migrations share a number",
        dir.display()
    );
    pairs
}
