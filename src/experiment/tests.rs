use super::*;
use crate::batch::TaskSampling;
use crate::data::Task;
use crate::freeze::Freeze;
use crate::optim::LrPreset;
use crate::train::EpochRecord;

fn base() -> TrainConfig {
    let mut c = TrainConfig::new("model".into(), "out".into());
    c.data.task_a = Some("a.tsv".into());
    c.data.task_b = Some("b.tsv".into());
    c
}

fn applied(sets: &[&Overrides]) -> TrainConfig {
    let mut c = base();
    for s in sets {
        s.apply(&mut c);
    }
    c
}

/// A converter for older grid files' `args` that knows two options (the command line's real one
/// is tested in `cli::experiment`).
fn two_flags(args: &[String]) -> Result<Overrides> {
    let mut o = Overrides::default();
    for w in args.chunks(2) {
        match (w[0].as_str(), w.get(1)) {
            ("--lr-plan", Some(v)) => o.lr_plan = Some(v.parse()?),
            ("--freeze", Some(v)) => o.freeze = Some(v.parse()?),
            (flag, _) => return Err(invalid(format!("unknown option {flag}"))),
        }
    }
    Ok(o)
}

#[test]
fn settings_read_as_users_type_them_and_apply() {
    let o: Overrides = toml::from_str(
        "freeze = \"layers:3\"\nlr_plan = \"uniform\"\nlr = 2e-5\nlr_overrides = [\"heads=1e-3\"]\nsampling = \"temperature:2\"\n\
         loss_weighting = \"uncertainty\"\nonly_task = \"b\"\nepochs = 2\nweight_a = 2\nbucketing = false\n",
    )
    .unwrap();
    assert_eq!(o.freeze, Some(Freeze::Layers(3)));
    assert_eq!(o.sampling, Some(TaskSampling::Temperature(2.0)));
    assert_eq!(o.only_task, Some(Task::B));
    assert_eq!(o.weight_a, Some(2.0));
    let c = applied(&[&o]);
    assert_eq!(c.optimizer.freeze, Freeze::Layers(3));
    assert_eq!(c.optimizer.lr_plan, LrPreset::Uniform);
    assert_eq!(c.optimizer.lr_overrides, vec![(String::new(), 2e-5), ("heads".into(), 1e-3)]);
    assert_eq!((c.schedule.epochs, c.schedule.bucketing, c.data.only_task), (2, false, Some(Task::B)));
    assert_eq!(c.schedule.batch_size, base().schedule.batch_size, "what is not set stays the base's");
    // Written back the same way, with only what is set.
    let text = toml::to_string(&o).unwrap();
    assert!(text.contains("freeze = \"layers:3\"") && text.contains("sampling = \"temperature:2\"") && !text.contains("patience"), "{text}");
    assert_eq!(toml::from_str::<Overrides>(&text).unwrap(), o);
    assert_eq!(serde_json::from_value::<Overrides>(serde_json::to_value(&o).unwrap()).unwrap(), o);
    assert_eq!(
        o.to_string(),
        "freeze=layers:3 lr_plan=uniform lr=0.00002 lr_overrides=heads=0.001 weight_a=2 loss_weighting=uncertainty epochs=2 sampling=temperature:2 bucketing=false only_task=b"
    );
    for bad in ["freeze = \"elbows\"", "sampling = \"sideways\"", "only_task = \"c\"", "lr_overrides = [\"x\"]", "epoch = 2"] {
        assert!(toml::from_str::<Overrides>(bad).is_err(), "{bad}");
    }
}

#[test]
fn task_weights_set_the_named_tasks_loss_weights() {
    let o: Overrides = toml::from_str("tasks = [\"trec6\", \"stsb\"]\ntask_weights = { sts = 10, task_a = 0.5 }\n").unwrap();
    let c = applied(&[&o]);
    assert_eq!(c.optimizer.weight_a, 0.5);
    assert_eq!(c.data.tasks.iter().map(|t| (t.name.as_str(), t.weight)).collect::<Vec<_>>(), vec![("sts", 10.0)]);
    assert!(c.data.task_b.is_none());
    o.check_tasks(&c).unwrap();
    assert_eq!(o.to_string(), "tasks=trec6+stsb task_weights=sts=10,task_a=0.5");
    assert_eq!(toml::from_str::<Overrides>(&toml::to_string(&o).unwrap()).unwrap(), o);
    // A weight for a task the run does not train is an error, not a silent no-op.
    let stray: Overrides = toml::from_str("tasks = [\"trec6\"]\ntask_weights = { paraphrase = 2 }\n").unwrap();
    let err = stray.check_tasks(&applied(&[&stray])).unwrap_err().to_string();
    assert!(err.contains("'paraphrase' is not a task of this run"), "{err}");
    let b_only: Overrides = toml::from_str("task_weights = { task_b = 2 }\nonly_task = \"a\"\n").unwrap();
    assert!(b_only.check_tasks(&applied(&[&b_only])).is_err());
    for bad in ["task_weights = {}", "task_weights = { sts = -1 }", "task_weights = { sts = nan }"] {
        assert!(toml::from_str::<Overrides>(bad).is_err(), "{bad}");
    }
}

#[test]
fn then_is_applying_one_after_the_other() {
    let a = Overrides { lr_plan: Some(LrPreset::Uniform), lr_overrides: Some(vec![("heads".into(), 1e-3)]), epochs: Some(3), ..Overrides::default() };
    let b = Overrides { lr: Some(1e-4), freeze: Some(Freeze::Encoder), epochs: Some(5), ..Overrides::default() };
    for (x, y) in [(&a, &b), (&b, &a), (&a, &Overrides::default()), (&Overrides::default(), &b)] {
        assert_eq!(run_key(&applied(&[&x.then(y)])), run_key(&applied(&[x, y])), "{x} then {y}");
    }
    assert_eq!(a.then(&b).lr_overrides, None, "lr and lr_overrides go together");
}

#[test]
fn a_run_is_matched_by_its_resolved_configuration() {
    let mut a = applied(&[&Overrides { lr_plan: Some(LrPreset::Uniform), freeze: Some(Freeze::Encoder), ..Overrides::default() }]);
    // Where it writes, where the cache lives and the device do not count.
    let mut b = applied(&[&Overrides { freeze: Some(Freeze::Encoder), lr_plan: Some(LrPreset::Uniform), ..Overrides::default() }]);
    b.output.out = "elsewhere/seed-0".into();
    b.schedule.cache_dir = Some("moved/cache".into());
    b.device = "cpu".into();
    b.output.save_weights = !a.output.save_weights;
    b.output.resume_state = !a.output.resume_state;
    assert_eq!(run_key(&a), run_key(&b));
    // Equivalent settings: one rate for everything written either way; a setting equal to the base's.
    let lr = applied(&[&Overrides { lr: Some(1e-4), ..Overrides::default() }]);
    let listed = applied(&[&Overrides { lr_overrides: Some(vec![(String::new(), 1e-4)]), ..Overrides::default() }]);
    assert_eq!(run_key(&lr), run_key(&listed));
    assert_eq!(run_key(&applied(&[&Overrides { batch_size: Some(32), ..Overrides::default() }])), run_key(&base()));
    // Anything else does.
    for change in [
        Overrides { epochs: Some(2), ..Overrides::default() },
        Overrides { freeze: Some(Freeze::All), ..Overrides::default() },
        Overrides { limit: Some(64), ..Overrides::default() },
        Overrides { save_best: Some(true), ..Overrides::default() },
    ] {
        let c = applied(&[&Overrides { lr_plan: Some(LrPreset::Uniform), freeze: Some(Freeze::Encoder), ..Overrides::default() }, &change]);
        assert_ne!(run_key(&a), run_key(&c), "{change}");
    }
    a.schedule.seed = 1;
    assert_ne!(run_key(&a), run_key(&b), "the seed counts");
    assert_eq!(key_changes(&run_key(&b), &run_key(&a)), ["seed: 0 → 1"]);
}

fn task(accuracy: f64) -> TaskMetrics {
    TaskMetrics { accuracy, macro_f1: accuracy / 2.0, n: 10, confusion: vec![], labels: vec![] }
}

fn epoch(epoch: usize, steps: usize, loss: (f64, f64), dev: (f64, f64)) -> EpochRecord {
    EpochRecord {
        epoch,
        steps,
        loss_a: loss.0,
        loss_b: loss.1,
        seconds: 2.0,
        sentences_per_s: 50.0,
        dev: [("task_a".to_string(), task(dev.0)), ("task_b".to_string(), task(dev.1))].into(),
        ood: BTreeMap::new(),
        loss_log_vars: None,
        losses: BTreeMap::new(),
        dev_similarity: BTreeMap::new(),
    }
}

fn result(seed: u64, a: f64, b: f64, trained: &[&str]) -> RunResult {
    RunResult {
        name: "x".into(),
        seed,
        config: Some(base()),
        dev: [("task_a".to_string(), task(a)), ("task_b".to_string(), task(b))].into(),
        ood: [("task_b".to_string(), task(b / 2.0))].into(),
        trained_tasks: trained.iter().map(|t| t.to_string()).collect(),
        trainable_params: 123,
        wall_seconds: 10.0 + seed as f64,
        train_seconds: 4.0,
        sentences_per_s: 100.0,
        cache_seconds: 0.0,
        epochs_run: 2,
        dev_similarity: BTreeMap::new(),
        sts: Some(crate::metrics::SimilarityMetrics { spearman: 0.8 - 0.01 * seed as f64, pearson: 0.8, n: 10 }),
    }
}

#[test]
fn a_run_folder_from_before_the_recorded_configuration_still_matches() {
    let d = tempfile::tempdir().unwrap();
    let cfg = applied(&[&Overrides { lr_plan: Some(LrPreset::Uniform), ..Overrides::default() }]);
    let mut old = serde_json::to_value(result(0, 0.5, 0.5, &["task_a", "task_b"])).unwrap();
    old.as_object_mut().unwrap().remove("config");
    old["args"] = serde_json::json!(["--lr-plan", "uniform", "--seed", "0"]);
    std::fs::write(d.path().join("result.json"), old.to_string()).unwrap();
    std::fs::write(d.path().join("metrics.json"), serde_json::to_string(&RunMetrics::default()).unwrap()).unwrap();
    assert!(stored_run(d.path()).is_none(), "without config.json there is nothing to match");
    std::fs::write(d.path().join("config.json"), serde_json::json!({"format": "x", "training": cfg}).to_string()).unwrap();
    let (r, _, stored) = stored_run(d.path()).unwrap();
    assert!(r.config.is_none());
    assert_eq!(run_key(&stored), run_key(&cfg));
}

#[test]
fn stats_and_slugs() {
    let s = Stat::of(&[1.0, 2.0, 3.0, f64::NAN]);
    assert_eq!((s.mean, s.std, s.n), (2.0, 1.0, 3));
    assert_eq!(Stat::of(&[0.5]).std, 0.0);
    assert!(Stat::of(&[]).mean.is_nan() && Stat::of(&[f64::INFINITY]).n == 0);
    assert_eq!(slug("freeze:layers:3"), "freeze-layers-3");
    assert_eq!(slug("heads-only:tuned"), "heads-only-tuned");
    assert_eq!(slug("--lr =1e-4"), "lr-1e-4");
    assert_eq!(slug("a, \"b\""), "a-b");
}

#[test]
fn a_row_summarises_the_seeds() {
    let m = |l: f64, d: f64| RunMetrics { epochs: vec![epoch(1, 2, (l, l), (d, d)), epoch(2, 2, (l / 2.0, l / 2.0), (d + 0.1, d + 0.1))], ..RunMetrics::default() };
    let both = ["task_a", "task_b"];
    let results = [result(0, 0.5, 0.6, &both), result(1, 0.7, 0.8, &both)];
    let set = Overrides { lr_plan: Some(LrPreset::Uniform), ..Overrides::default() };
    let row = summarise("u", &set, &results, &[m(1.0, 0.4), m(2.0, 0.6)]);
    assert_eq!((row.name.as_str(), &row.settings, &row.seeds[..]), ("u", &set, &[0, 1][..]));
    assert!((row.a_accuracy.mean - 0.6).abs() < 1e-12 && (row.a_accuracy.std - 0.02f64.sqrt()).abs() < 1e-12, "{:?}", row.a_accuracy);
    assert!((row.b_macro_f1.mean - 0.35).abs() < 1e-12);
    assert!((row.ood_b_accuracy.mean - 0.35).abs() < 1e-12);
    assert_eq!((row.trainable_params, row.epochs, row.wall_seconds.mean), (123, 2, 10.5));
    assert_eq!(row.per_epoch.len(), 2);
    let p = row.per_epoch[1];
    assert_eq!(p.epoch, 2);
    assert!((p.loss_a - 0.75).abs() < 1e-12 && (p.dev_b_accuracy - 0.6).abs() < 1e-12, "{p:?}");
    // A single-task run counts only for its own task.
    let row = summarise("a", &Overrides::default(), &[result(0, 0.5, 0.9, &["task_a"])], &[m(1.0, 0.5)]);
    assert_eq!((row.a_accuracy.n, row.b_accuracy.n, row.ood_b_accuracy.n), (1, 0, 0));
    assert!(row.b_accuracy.mean.is_nan());
    // No seeds, no epochs.
    let row = summarise("none", &Overrides::default(), &[], &[]);
    assert!(row.per_epoch.is_empty() && row.loss_curve.is_empty() && row.a_accuracy.n == 0);
}

#[test]
fn the_loss_curve_bins_tenths_of_an_epoch() {
    // Two epochs of 20 steps: each tenth holds 2 steps. Task B has no label in epoch 2's steps.
    let steps = 20;
    let a: Vec<Option<f64>> = (0..2 * steps).map(|i| Some(i as f64)).collect();
    let b: Vec<Option<f64>> = (0..2 * steps).map(|i| (i < steps).then_some(1.0)).collect();
    let m = RunMetrics { epochs: vec![epoch(0, 0, (0.0, 0.0), (0.1, 0.1)), epoch(1, steps, (0.0, 0.0), (0.0, 0.0)), epoch(2, steps, (0.0, 0.0), (0.0, 0.0))], step_losses_a: a, step_losses_b: b, ..RunMetrics::default() };
    let c = loss_curve(std::slice::from_ref(&m));
    assert_eq!(c.len(), 20);
    assert_eq!(c[0], LossPoint { epoch: 0.05, loss_a: 0.5, loss_b: 1.0 });
    assert!((c[19].epoch - 1.95).abs() < 1e-12 && c[19].loss_a == 38.5 && c[19].loss_b.is_nan(), "{:?}", c[19]);
    // Over seeds: each step counts once (seed 2's losses are 100 higher).
    let mut m2 = m.clone();
    m2.step_losses_a = m.step_losses_a.iter().map(|x| x.map(|v| v + 100.0)).collect();
    assert_eq!(loss_curve(&[m.clone(), m2])[0].loss_a, 50.5);
    // Fewer steps than bins: each step its own bin.
    let short = RunMetrics { epochs: vec![epoch(1, 3, (0.0, 0.0), (0.0, 0.0))], step_losses_a: vec![Some(1.0), Some(2.0), Some(3.0)], step_losses_b: vec![None; 3], ..RunMetrics::default() };
    let c = loss_curve(&[short]);
    assert_eq!(c.iter().map(|p| p.epoch).collect::<Vec<_>>(), [0.05, 0.35, 0.65]);
    assert_eq!(c.iter().map(|p| p.loss_a).collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
}

fn grid_results(names: &[&str]) -> GridResults {
    let rows = names
        .iter()
        .map(|n| {
            let mut row = summarise(n, &Overrides { lr_plan: Some(LrPreset::Uniform), epochs: Some(2), ..Overrides::default() }, &[result(0, 0.5, 0.25, &["task_a"])], &[]);
            row.per_epoch.push(EpochPoint { epoch: 1, loss_a: 1.0, loss_b: f64::NAN, dev_a_accuracy: 0.5, dev_b_accuracy: f64::NAN });
            row
        })
        .collect();
    GridResults { grid: "g".into(), seeds: 1, base: base(), rows, searches: BTreeMap::new() }
}

#[test]
fn results_csv_quotes_what_needs_it() {
    let name = "uniform, \"2 epochs\"";
    let r = grid_results(&[name, "plain"]);
    let bytes = results_csv(&r).unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.len(), 19);
    assert_eq!((header[0].as_str(), header[2].as_str(), header[18].as_str()), ("config", "a_accuracy_mean", "args"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], name);
    assert_eq!(rows[0].len(), 19, "a comma in a name does not shift the columns");
    assert_eq!((&rows[0][1], &rows[0][2], &rows[0][6]), ("1", "0.500000", ""), "missing numbers are empty");
    assert_eq!(&rows[0][18], "lr_plan=uniform epochs=2");
    assert_eq!(&rows[1][0], "plain");
    assert!(String::from_utf8(bytes).unwrap().starts_with("config,seeds,a_accuracy_mean,"));
}

#[test]
fn results_json_reads_back_with_named_points() {
    let r = grid_results(&["a"]);
    let v = serde_json::to_value(&r).unwrap();
    let p = &v["rows"][0]["per_epoch"][0];
    assert_eq!((p["epoch"].as_u64(), p["dev_a_accuracy"].as_f64(), p["loss_b"].is_null()), (Some(1), Some(0.5), true));
    assert_eq!(v["rows"][0]["settings"], serde_json::json!({"lr_plan": "uniform", "epochs": 2}));
    assert_eq!(v["base"]["task_a"], "a.tsv");
    let back: GridResults = serde_json::from_value(v).unwrap();
    assert!(back.rows[0].b_accuracy.mean.is_nan() && back.rows[0].per_epoch[0].loss_b.is_nan());
    assert_eq!(back.rows[0].settings, r.rows[0].settings);
}

#[test]
fn grid_files_in_toml_and_json() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("g.toml");
    let read = |text: &str| {
        std::fs::write(&t, text).unwrap();
        read_grid(&t, &two_flags)
    };
    let g = read(
        "[[config]]\nname = \"a\"\nlr_plan = \"uniform\"\nfreeze = \"layers:3\"\nepochs = 2\n\n\
         [[config]]\nname = \"b\"\nargs = \"--freeze encoder --lr-plan uniform\"\n\n\
         [[config]]\nname = \"c\"\nargs = [\"--lr-plan\", \"uniform\"]\n\n\
         [[config]]\nname = \"t\"\nsearch = \"heads-only\"\n",
    )
    .unwrap();
    assert_eq!(g[0].set, Overrides { lr_plan: Some(LrPreset::Uniform), freeze: Some(Freeze::Layers(3)), epochs: Some(2), ..Overrides::default() });
    assert_eq!(g[1].set, Overrides { lr_plan: Some(LrPreset::Uniform), freeze: Some(Freeze::Encoder), ..Overrides::default() });
    assert_eq!(g[2].set.lr_plan, Some(LrPreset::Uniform));
    assert_eq!((g[3].search, g[3].set.is_empty()), (Some(Search::HeadsOnly), true));
    let j = d.path().join("g.json");
    std::fs::write(&j, r#"{"config": [{"name": "x", "freeze": "all"}, {"name": "y", "args": ["--freeze", "all"]}]}"#).unwrap();
    let g = read_grid(&j, &two_flags).unwrap();
    assert_eq!(g[0].set, g[1].set);
    // grid.json (the runner's copy of a grid) reads back as the same grid.
    let builtin = builtin_grid("extended").unwrap();
    std::fs::write(&j, serde_json::to_vec_pretty(&serde_json::json!({"grid": "extended", "config": builtin})).unwrap()).unwrap();
    assert_eq!(read_grid(&j, &two_flags).unwrap(), builtin);
    // Errors name the file, the configuration, the key and (TOML) its line.
    let err = |text: &str| read(text).unwrap_err().to_string();
    let e = err("[[config]]\nname = \"a\"\nargz = []\n");
    assert!(e.contains("g.toml:3:") && e.contains("argz"), "{e}");
    let e = err("[[config]]\nname = \"a\"\nlr_plan = \"uniform\"\n\n[[config]]\nname = \"b\"\nlr_plan = \"sideways\"\n");
    assert!(e.contains("g.toml:7:") && e.contains("configuration 'b'") && e.contains("lr_plan") && e.contains("sideways"), "{e}");
    let e = err("[[config]]\nname = \"a\"\nepochs = \"two\"\n");
    assert!(e.contains("g.toml:3:") && e.contains("epochs"), "{e}");
    let e = err("[[config]]\nname = \"a\"\nargs = \"--freeze elbows\"\n");
    assert!(e.contains("configuration 'a'") && e.contains("elbows"), "{e}");
    let e = err("[[config]]\nname = \"a\"\nargs = \"--freeze all\"\nepochs = 2\n");
    assert!(e.contains("cannot be mixed"), "{e}");
    assert!(err("[[config]]\nname = \"a\"\n[[config]]\nname = \"a\"\n").contains("'a' appears twice"));
    assert!(err("[[config]]\nname = \"a:b\"\n[[config]]\nname = \"a-b\"\n").contains("share the run folder runs/a-b"));
    assert!(err("[[config]]\nname = \"::\"\n").contains("letter or digit"));
    assert!(err("[[config]]\nepochs = 1\n").contains("no name"));
    assert!(err("").contains("no `config`"));
    assert!(err("[[config]]\nname = \"a\"\n[extra]\n").contains("unknown key `extra`"));
    assert!(err("[[config]]\nname = \"a\"\nsearch = \"random\"\n").contains("search"));
    // The seed's ten configurations, tuned+sts, and the task sets (four tasks together, each alone).
    let default = builtin_grid("default").unwrap();
    assert_eq!(default.len(), 16);
    let sts = default.iter().find(|e| e.name == "tuned+sts").unwrap();
    assert_eq!((sts.search, sts.set.tasks.clone()), (Some(Search::Tuned), Some(vec!["trec6".into(), "sst5_3class".into(), "stsb".into()])));
    let four = applied(&[&default.iter().find(|e| e.name == "4-task").unwrap().set]);
    assert_eq!(four.data.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["sts", "paraphrase"]);
    assert!(four.data.task_a.is_some() && four.data.task_b.is_some());
    let single = applied(&[&default.iter().find(|e| e.name == "single:mrpc").unwrap().set]);
    assert!(single.data.task_a.is_none() && single.data.task_b.is_none() && single.data.ood_b.is_none() && single.data.tasks.len() == 1);
    assert!(builtin_grid("tasks").unwrap().iter().all(|e| e.search.is_none()));
    let e = err("[[config]]\nname = \"a\"\ntasks = [\"stsb\", \"imdb\"]\n");
    assert!(e.contains("'imdb' is not a bundled data set"), "{e}");
    assert!(builtin_grid("extended").unwrap().iter().any(|e| e.name == "single-task:b"));
}
