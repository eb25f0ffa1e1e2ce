//! The knob table (`shared/aws/src/config.rs`) against the three places that
//! must agree with it: `docs/configuration.md`, `template.yaml`'s
//! `Environment` of each function, and the code that reads the environment.
//! A knob added to one place only fails here.

use platformsync_aws::Calls;
use platformsync_aws::config::{self, DefaultValue, Function, KNOBS, PLATFORM_VARIABLES, Unit};
use platformsync_template::Template;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

#[test]
fn config_docs_are_rendered_from_the_table() {
    let path = root().join("docs/configuration.md");
    let expected = config::render_markdown();
    if std::env::var_os("UPDATE_CONFIG_DOCS").is_some() {
        std::fs::write(&path, &expected).expect("writing docs/configuration.md");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/configuration.md is not the table's rendering. Regenerate it with\n\n  \
         UPDATE_CONFIG_DOCS=1 cargo test -p platformsync-aws --test configuration config_docs\n\n\
         Expected:\n{expected}"
    );
}

/// Each function's `Environment.Variables` (globals merged), raw values.
fn template_environments() -> BTreeMap<String, BTreeMap<String, Value>> {
    let template = Template::load(root().join("template.yaml")).expect("template.yaml");
    let globals = template.globals()["Function"]["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    template
        .resources()
        .filter(|r| r.kind == "AWS::Serverless::Function")
        .map(|r| {
            let mut env: BTreeMap<String, Value> = globals.clone().into_iter().collect();
            if let Some(own) = r.properties["Environment"]["Variables"].as_object() {
                env.extend(own.clone());
            }
            (r.logical_id.clone(), env)
        })
        .collect()
}

/// What is wrong between the table and the functions' environments.
fn template_problems(environments: &BTreeMap<String, BTreeMap<String, Value>>) -> Vec<String> {
    let mut problems = Vec::new();
    let known: BTreeSet<&str> = Function::ALL.iter().map(|f| f.logical_id()).collect();
    for id in environments.keys() {
        if !known.contains(id.as_str()) {
            problems.push(format!("{id} is not a function of the knob table"));
        }
    }
    for function in Function::ALL {
        let id = function.logical_id();
        let Some(env) = environments.get(id) else {
            problems.push(format!("{id} is not in template.yaml"));
            continue;
        };
        for (name, value) in env {
            match config::find(name) {
                None => problems.push(format!(
                    "{id} sets {name}, which is not a knob (shared/aws/src/config.rs)"
                )),
                Some(k) if !k.read_by(function) => problems.push(format!(
                    "{id} sets {name}, which is not a knob of {}",
                    function.binary()
                )),
                Some(k) if k.local_only => {
                    problems.push(format!("{id} sets {name}, which only local runs may set"))
                }
                Some(k) if k.unit != Unit::Text => {
                    // A literal number must be one the function accepts.
                    if let Some(text) = value.as_str()
                        && !text
                            .trim()
                            .parse::<u64>()
                            .is_ok_and(|n| (k.min..=k.max).contains(&n))
                    {
                        problems.push(format!(
                            "{id} sets {name} to {text:?}, outside {}..={}",
                            k.min, k.max
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        for k in config::knobs_of(function) {
            if k.default == DefaultValue::Required && !env.contains_key(k.name) {
                problems.push(format!(
                    "{id} reads {} (required) but does not set it",
                    k.name
                ));
            }
        }
    }
    // The local runner runs every function in one process with one
    // environment: a knob of several functions is set for all of them or
    // none, with one value, so local runs see what AWS runs.
    for k in KNOBS {
        let set: BTreeMap<&str, &Value> = k
            .functions
            .iter()
            .filter_map(|f| {
                environments
                    .get(f.logical_id())
                    .and_then(|env| env.get(k.name))
                    .map(|v| (f.logical_id(), v))
            })
            .collect();
        let values: BTreeSet<String> = set.values().map(|v| v.to_string()).collect();
        if !set.is_empty() && (set.len() != k.functions.len() || values.len() > 1) {
            problems.push(format!(
                "{} is set as {set:?} but read by {:?}: set it for all of them with one value, or for none",
                k.name,
                k.functions.iter().map(|f| f.logical_id()).collect::<Vec<_>>()
            ));
        }
    }
    problems
}

#[test]
fn the_template_sets_exactly_the_knobs_of_each_function() {
    let problems = template_problems(&template_environments());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_template_check_notices_a_knob_in_one_place_only() {
    let clean = template_environments();
    assert!(template_problems(&clean).is_empty());

    let mut unknown = clean.clone();
    unknown
        .get_mut("PushFunction")
        .unwrap()
        .insert("NEW_KNOB".into(), Value::String("1".into()));
    assert!(template_problems(&unknown)[0].contains("NEW_KNOB"));

    let mut missing = clean.clone();
    missing
        .get_mut("IngestFunction")
        .unwrap()
        .remove("REJECTS_TABLE");
    assert!(template_problems(&missing)[0].contains("REJECTS_TABLE"));

    let mut one_of_two = clean.clone();
    one_of_two
        .get_mut("FanoutFunction")
        .unwrap()
        .insert("CONFIG_CACHE_SECONDS".into(), Value::String("45".into()));
    assert!(template_problems(&one_of_two)[0].contains("CONFIG_CACHE_SECONDS"));

    let mut out_of_bounds = clean;
    out_of_bounds
        .get_mut("IngestFunction")
        .unwrap()
        .insert("WRITE_CONCURRENCY".into(), Value::String("0".into()));
    assert!(template_problems(&out_of_bounds)[0].contains("outside"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    // An unreadable folder would make the scan pass over nothing.
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal after each `pattern` in `source`.
fn literals_after<'a>(source: &'a str, pattern: &str) -> Vec<&'a str> {
    source
        .split(pattern)
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name))
        .collect()
}

/// Environment reads of a source file that bypass the table.
fn bypasses(source: &str) -> Vec<String> {
    let platform = |name: &str| {
        PLATFORM_VARIABLES.iter().any(|(p, _)| *p == name) || name.starts_with("AWS_ENDPOINT_URL_")
    };
    let mut out = Vec::new();
    for pattern in ["var(\"", "var_os(\""] {
        for name in literals_after(source, pattern) {
            if !platform(name) {
                out.push(format!("reads {name} directly"));
            }
        }
    }
    for pattern in ["required(\"", "parsed_or(\""] {
        for name in literals_after(source, pattern) {
            out.push(format!("reads {name} with {pattern}..)"));
        }
    }
    out
}

/// `knob::NAME` references of a source.
fn knob_refs(source: &str) -> BTreeSet<String> {
    source
        .split("knob::")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn code_reads_the_environment_only_through_the_table() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("functions"), &mut files);
    rust_files(&root.join("shared"), &mut files);
    let this = Path::new(file!()).file_name().unwrap_or_default();
    let mut problems = Vec::new();
    for path in files {
        // The table itself, this test, and build scripts (Cargo's build-time
        // variables, not the functions' environment).
        if path.ends_with("shared/aws/src/config.rs")
            || path.file_name() == Some(this)
            || path.ends_with("build.rs")
        {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        for p in bypasses(&source) {
            problems.push(format!(
                "{}: {p}; read it through platformsync_aws::config",
                path.strip_prefix(&root).unwrap_or(&path).display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        bypasses(r#"std::env::var("NEW_KNOB"); env::required("T")"#).len(),
        2,
        "the scan finds what it must"
    );
    assert!(bypasses(r#"std::env::var("AWS_REGION")"#).is_empty());
}

fn function_sources(function: Function) -> String {
    let mut files = Vec::new();
    rust_files(
        &root().join("functions").join(function.binary()).join("src"),
        &mut files,
    );
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

#[test]
fn each_function_reads_exactly_its_knobs() {
    let mut problems = Vec::new();
    for function in Function::ALL {
        let mut sources = function_sources(function);
        // Stream-recovery is configured like the fan-out, by the fan-out's
        // loader.
        if function == Function::StreamRecovery {
            sources.push_str(&function_sources(Function::Fanout));
        }
        let mut read = knob_refs(&sources);
        // The SDK's call bounds are read for the function by one loader.
        if sources.contains("Calls::from_knobs") {
            read.extend(Calls::KNOBS.iter().map(|k| k.name.to_owned()));
        }
        let declared: BTreeSet<String> = config::knobs_of(function)
            .map(|k| k.name.to_owned())
            .collect();
        for name in read.difference(&declared) {
            problems.push(format!(
                "{} reads {name}, not one of its knobs in the table",
                function.binary()
            ));
        }
        for name in declared.difference(&read) {
            problems.push(format!(
                "the table gives {name} to {}, which never reads it",
                function.binary()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
