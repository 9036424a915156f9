//! The grids: the built-in `default` and `extended`, and grid files (TOML or JSON), each a
//! list of [`Entry`]s.

use super::{slug, Entry, Overrides, Search};
use crate::batch::TaskSampling;
use crate::data::Task;
use crate::error::{Error, Result};
use crate::freeze::Freeze;
use crate::optim::LrPreset;
use crate::train::LossWeighting;
use std::path::Path;

fn entry(name: &str, set: Overrides) -> Entry {
    Entry { name: name.into(), search: None, set }
}

fn tasks(sets: &[&str]) -> Overrides {
    Overrides { tasks: Some(sets.iter().map(|s| s.to_string()).collect()), ..Overrides::default() }
}

fn searched(name: &str, search: Search) -> Entry {
    Entry { name: name.into(), search: Some(search), set: Overrides::default() }
}

/// The built-in grids: `default` (the seed's questions, the tuned recipes, `tuned+sts` and the
/// task sets: the four bundled tasks together and each alone), `extended` (plus task sampling,
/// loss weighting, single-task models and pooling) and `tasks` (one epoch each, no searches:
/// the seed's scenarios, `uniform+sts` and the task sets, for what each keeps of STS-B).
pub fn builtin_grid(name: &str) -> Option<Vec<Entry>> {
    let uniform = Overrides { lr_plan: Some(LrPreset::Uniform), ..Overrides::default() };
    let with = |change: fn(&mut Overrides)| {
        let mut o = uniform.clone();
        change(&mut o);
        o
    };
    let default = vec![
        entry("uniform", uniform.clone()),
        entry("layerwise", Overrides { lr_plan: Some(LrPreset::Layerwise), ..Overrides::default() }),
        entry("freeze:encoder", with(|o| o.freeze = Some(Freeze::Encoder))),
        entry("freeze:all", Overrides { freeze: Some(Freeze::All), ..Overrides::default() }),
        entry("freeze:head-a", with(|o| o.freeze = Some(Freeze::HeadA))),
        entry("freeze:head-b", with(|o| o.freeze = Some(Freeze::HeadB))),
        entry("freeze:layers:3", with(|o| o.freeze = Some(Freeze::Layers(3)))),
        entry("layer-decay:0.8", with(|o| o.layer_decay = Some(0.8))),
        searched("tuned", Search::Tuned),
        searched("heads-only:tuned", Search::HeadsOnly),
        Entry { name: "tuned+sts".into(), search: Some(Search::Tuned), set: tasks(&["trec6", "sst5_3class", "stsb"]) },
    ];
    // Task sets, each with the uniform recipe: the four bundled tasks together, and each alone.
    let mut task_sets = vec![entry("4-task", Overrides { lr_plan: Some(LrPreset::Uniform), ..tasks(&crate::data::bundled::SETS) })];
    for set in crate::data::bundled::SETS {
        task_sets.push(entry(&format!("single:{set}"), Overrides { lr_plan: Some(LrPreset::Uniform), ..tasks(&[set]) }));
    }
    match name {
        "default" => Some(default.into_iter().chain(task_sets).collect()),
        "tasks" => {
            // What each scenario preserves: the seed's questions scored on STS-B too, beside the
            // task sets, one epoch each (no searches).
            let mut g: Vec<Entry> = default.into_iter().filter(|e| e.search.is_none() && e.name != "freeze:head-a" && e.name != "freeze:head-b").collect();
            g.push(entry("uniform+sts", Overrides { lr_plan: Some(LrPreset::Uniform), ..tasks(&["trec6", "sst5_3class", "stsb"]) }));
            g.extend(task_sets);
            Some(g)
        }
        "extended" => {
            let mut g: Vec<Entry> = default.into_iter().chain(task_sets).collect();
            g.extend([
                entry("sampling:round-robin", with(|o| o.sampling = Some(TaskSampling::RoundRobin))),
                entry("sampling:temperature:2", with(|o| o.sampling = Some(TaskSampling::Temperature(2.0)))),
                entry("loss:uncertainty", with(|o| o.loss_weighting = Some(LossWeighting::Uncertainty))),
                entry("single-task:a", with(|o| o.only_task = Some(Task::A))),
                entry("single-task:b", with(|o| o.only_task = Some(Task::B))),
                entry("pooling:max", with(|o| o.pooling = Some("max".into()))),
                entry("pooling:cls", with(|o| o.pooling = Some("cls".into()))),
            ]);
            Some(g)
        }
        _ => None,
    }
}

/// Turns an older grid file's `args` (a list of `mtt train` options) into settings: the command
/// line owns flag parsing and passes this to [`read_grid`].
pub type FromArgs<'a> = dyn Fn(&[String]) -> Result<Overrides> + 'a;

/// Reads a grid file: `[[config]]` tables (TOML) or `{"config": [...]}` (JSON), each with
/// `name`, optional `search` (`tuned` or `heads-only`) and the settings it changes as
/// [`Overrides`] keys (`lr_plan = "uniform"`, `epochs = 2`, ...). The older form, `args` (`mtt
/// train` options, a list or one string split on whitespace), is turned into settings by
/// `from_args`. A top-level `grid` key (a name, as `grid.json` has) is allowed and ignored.
///
/// Errors name the file, the configuration and the key (with its line, for TOML); an unknown
/// key, a repeated name, two names sharing a run folder and an empty grid are errors.
pub fn read_grid(path: &Path, from_args: &FromArgs) -> Result<Vec<Entry>> {
    use serde_json::Value;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let doc: Value = if json {
        serde_json::from_str(&text).map_err(|e| Error::data(path, e.line(), format!("not a grid file: {e}")))?
    } else {
        toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            Error::data(path, line, format!("not a grid file: {}", e.message().trim()))
        })?
    };
    let Value::Object(mut top) = doc else { return Err(Error::config(path, "not a grid file: expected `config` entries")) };
    top.remove("grid");
    let configs = match top.remove("config") {
        Some(Value::Array(v)) => v,
        Some(_) => return Err(Error::config(path, "`config` must be a list of configurations ([[config]] tables in TOML)")),
        None => return Err(Error::config(path, "not a grid file: no `config` entries")),
    };
    if let Some(key) = top.keys().next() {
        return Err(key_error(path, &text, 0, key, format!("unknown key `{key}` (a grid file holds `config` entries)")));
    }
    let mut out: Vec<Entry> = Vec::new();
    for (i, raw) in configs.into_iter().enumerate() {
        let Value::Object(mut map) = raw else {
            return Err(Error::config(path, format!("configuration {} is not a table", i + 1)));
        };
        let name = match map.remove("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(Value::String(_)) | None => return Err(Error::config(path, format!("configuration {} has no name", i + 1))),
            Some(_) => return Err(key_error(path, &text, 0, "name", format!("configuration {}: `name` must be a string", i + 1))),
        };
        // Line numbers point into this configuration: keys are looked for from its name on.
        let from = text.lines().position(|l| sets_key(l, "name") && l.contains(&name)).unwrap_or(0);
        let at = |key: &str, msg: String| key_error(path, &text, from, key, format!("configuration '{name}': {msg}"));
        let search = match map.remove("search") {
            None => None,
            Some(v) => Some(serde_json::from_value::<Search>(v).map_err(|e| at("search", format!("search: {e}")))?),
        };
        let set = match map.remove("args") {
            None => settings(&map).map_err(|(key, msg)| at(&key, msg))?,
            Some(_) if !map.is_empty() => {
                let key = map.keys().next().expect("not empty").clone();
                return Err(at(&key, format!("`args` (the older form) and settings such as `{key}` cannot be mixed: use one")));
            }
            Some(args) => {
                let list: Vec<String> = match args {
                    Value::String(s) => s.split_whitespace().map(String::from).collect(),
                    Value::Array(v) => v
                        .into_iter()
                        .map(|x| if let Value::String(s) = x { Some(s) } else { None })
                        .collect::<Option<_>>()
                        .ok_or_else(|| at("args", "`args` must be a string or a list of strings".into()))?,
                    _ => return Err(at("args", "`args` must be a string or a list of strings".into())),
                };
                from_args(&list).map_err(|e| at("args", e.to_string()))?
            }
        };
        if let Some(other) = out.iter().find(|e| e.name == name) {
            return Err(Error::config(path, format!("configuration '{}' appears twice", other.name)));
        }
        let folder = slug(&name);
        if folder.is_empty() {
            return Err(Error::config(path, format!("configuration '{name}': its name needs a letter or digit (it names the run folder)")));
        }
        if let Some(other) = out.iter().find(|e| slug(&e.name) == folder) {
            return Err(Error::config(path, format!("configurations '{}' and '{name}' would share the run folder runs/{folder}: rename one", other.name)));
        }
        out.push(Entry { name, search, set });
    }
    if out.is_empty() {
        return Err(Error::config(path, "the grid lists no configuration"));
    }
    Ok(out)
}

/// A configuration's settings from its keys; on error, the key at fault and why.
fn settings(map: &serde_json::Map<String, serde_json::Value>) -> std::result::Result<Overrides, (String, String)> {
    let one = |k: &str, v: &serde_json::Value| serde_json::from_value::<Overrides>(serde_json::json!({ k: v }));
    match serde_json::from_value::<Overrides>(serde_json::Value::Object(map.clone())) {
        Ok(o) => Ok(o),
        Err(e) => {
            // serde does not say which key a bad value belongs to: find it by trying each alone.
            for (k, v) in map {
                if let Err(e) = one(k, v) {
                    let msg = e.to_string();
                    return Err((k.clone(), if msg.starts_with("unknown field") { msg } else { format!("{k}: {msg}") }));
                }
            }
            Err((String::new(), e.to_string()))
        }
    }
}

/// Whether `line` sets `key` (TOML `key =`, JSON `"key":`).
fn sets_key(line: &str, key: &str) -> bool {
    let l = line.trim_start();
    let rest = l.strip_prefix(key).or_else(|| l.strip_prefix(&format!("\"{key}\"")));
    rest.is_some_and(|r| r.trim_start().starts_with(['=', ':']))
}

/// An error about `key`, at the first line from line index `from` on that sets it, when there
/// is one.
fn key_error(path: &Path, text: &str, from: usize, key: &str, msg: String) -> Error {
    match (!key.is_empty()).then(|| text.lines().skip(from).position(|l| sets_key(l, key))).flatten() {
        Some(i) => Error::data(path, from + i + 1, msg),
        None => Error::config(path, msg),
    }
}
