//! The settings as an operator meets them: `analytics serve --help` lists every one with its
//! variable and default, the README and `.env.example` say the same, and a bad value stops the
//! program with an error naming it.

use std::collections::BTreeMap;
use std::process::{Command, Output};

/// Runs the binary with only `vars` set, away from any `.env` the checkout may hold.
fn analytics(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_analytics"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run analytics")
}

/// Variable → default (`None` when it has none), as `serve --help` prints them.
fn help_settings() -> BTreeMap<String, Option<String>> {
    let output = analytics(&["serve", "--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    let mut settings = BTreeMap::new();
    for entry in help.split("\n      --").skip(1) {
        let Some(env) = entry.split("[env: ").nth(1) else {
            continue;
        };
        let name = env.split(['=', ']']).next().unwrap_or_default().to_owned();
        let default = entry
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
            .map(|d| d.trim_matches('"').to_owned());
        settings.insert(name, default);
    }
    settings
}

#[test]
fn serve_help_lists_every_setting_the_readme_and_env_example_document_with_the_same_defaults() {
    let help = help_settings();
    assert!(help.len() >= 16, "{help:?}");
    assert_eq!(help["CACHE_TTL_SECONDS"].as_deref(), Some("300"));
    assert_eq!(help["DATABASE_URL"], None);

    // README's table: `| `NAME` | default | meaning |`.
    let readme = include_str!("../../README.md");
    let mut documented = BTreeMap::new();
    for row in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let default = match cells[2] {
            "empty" => Some(String::new()),
            d if d.starts_with('`') => Some(d.trim_matches('`').to_owned()),
            _ => None, // required, unset
        };
        documented.insert(name.to_owned(), default);
    }
    assert_eq!(documented, help, "README's configuration table");

    // `.env.example`: every setting, each value given its default where it has one.
    let example = include_str!("../../.env.example");
    let mut listed = BTreeMap::new();
    for line in example.lines() {
        let line = line.trim_start_matches("# ");
        if let Some((name, value)) = line.split_once('=')
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            listed.insert(name.to_owned(), value.to_owned());
        }
    }
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        help.keys().collect::<Vec<_>>(),
        ".env.example"
    );
    for (name, default) in &help {
        if let Some(default) = default {
            assert_eq!(&listed[name], default, ".env.example {name}");
        }
    }
}

#[test]
fn a_bad_or_missing_setting_stops_the_program_with_an_error_naming_it() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "DATABASE_URL"),
        (
            &[("DATABASE_URL", "x"), ("CACHE_TTL_SECONDS", "-1")],
            "CACHE_TTL_SECONDS",
        ),
        (
            &[("DATABASE_URL", "x"), ("RETENTION_DAYS", "0")],
            "RETENTION_DAYS",
        ),
        (
            &[("DATABASE_URL", "x"), ("LOG_FORMAT", "xml")],
            "LOG_FORMAT",
        ),
    ];
    for (vars, name) in cases {
        let output = analytics(&["migrate"], vars);
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr.split("\n\n").next().unwrap_or_default();
        assert!(
            error.starts_with("error: ") && error.contains(name),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn an_empty_variable_counts_as_unset() {
    // `RETENTION_DAYS=` parses as unset, so the command gets as far as the database: an
    // unreachable one on a closed port, which fails with status 1, not 2.
    let output = analytics(
        &["migrate"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            ("RETENTION_DAYS", ""),
            ("REDIS_URL", " "),
            ("CACHE_TTL_SECONDS", ""),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
