//! Owns the named freezing scenarios of Task 3: which variable-name prefixes each one freezes,
//! parsed from and printed as the names users type (`encoder`, `layers:3`, ...).

use crate::error::{invalid, Error, Result};
use crate::params::{layer_name, Params, EMBEDDINGS, ENCODER, HEAD_A, HEAD_B};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A named freezing scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freeze {
    /// Everything trains.
    None,
    /// Nothing trains: the feature-extractor baseline (evaluation only).
    All,
    /// Embeddings and all layers frozen: heads only.
    Encoder,
    /// Only the embeddings frozen.
    Embeddings,
    /// Embeddings plus the first K layers frozen.
    Layers(usize),
    /// Task A's head frozen.
    HeadA,
    /// Task B's head frozen.
    HeadB,
    /// The head of the named task frozen (`head:NAME`; `head:task_a` is `head-a`).
    Head(String),
    /// Every head frozen: only the encoder trains (`heads`).
    Heads,
}

impl Freeze {
    /// Every scenario name as users type it (`K` stands for a layer count).
    pub const NAMES: [&'static str; 9] = ["none", "all", "encoder", "embeddings", "layers:K", "head-a", "head-b", "head:NAME", "heads"];

    /// The variable-name prefixes this scenario freezes in `params` (a model's subsets).
    pub fn prefixes(&self, params: &Params) -> Result<Vec<String>> {
        let n_layers = params.n_layers();
        Ok(match self {
            Freeze::None => vec![],
            Freeze::All => std::iter::once(ENCODER.to_string()).chain(params.head_names()).collect(),
            Freeze::Heads => params.head_names(),
            Freeze::Head(name) => {
                let subset = crate::task::head_subset(name);
                if params.get(&subset).is_none() {
                    return Err(invalid(format!("freezing scenario head:{name}: the model has no head for a task '{name}' (heads: {})", params.head_names().join(", "))));
                }
                vec![subset]
            }
            Freeze::Encoder => vec![ENCODER.into()],
            Freeze::Embeddings => vec![EMBEDDINGS.into()],
            &Freeze::Layers(k) => {
                if k > n_layers {
                    return Err(invalid(format!("freezing scenario layers:{k}: the model has only {n_layers} layers")));
                }
                let mut v = vec![EMBEDDINGS.to_string()];
                v.extend((0..k).map(layer_name));
                v
            }
            Freeze::HeadA => vec![HEAD_A.into()],
            Freeze::HeadB => vec![HEAD_B.into()],
        })
    }

    /// Freezes the scenario's variables in `params`; returns how many were frozen.
    pub fn apply(&self, params: &Params) -> Result<usize> {
        let mut n = 0;
        for p in self.prefixes(params)? {
            n += params.freeze(&p)?;
        }
        Ok(n)
    }

    /// Whether the scenario leaves every encoder variable frozen (only heads can train).
    pub fn freezes_encoder(&self) -> bool {
        matches!(self, Freeze::All | Freeze::Encoder)
    }
}

impl FromStr for Freeze {
    type Err = Error;

    fn from_str(s: &str) -> Result<Freeze> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "none" => Freeze::None,
            "all" => Freeze::All,
            "encoder" => Freeze::Encoder,
            "embeddings" => Freeze::Embeddings,
            "head-a" | "head_a" => Freeze::HeadA,
            "head-b" | "head_b" => Freeze::HeadB,
            "heads" => Freeze::Heads,
            other => match other.strip_prefix("layers:").map(str::parse::<usize>) {
                Some(Ok(k)) => Freeze::Layers(k),
                _ if other.starts_with("head:") => {
                    let name = &other["head:".len()..];
                    crate::task::check_name(name)?;
                    match name {
                        crate::task::TASK_A => Freeze::HeadA,
                        crate::task::TASK_B => Freeze::HeadB,
                        _ => Freeze::Head(name.to_string()),
                    }
                }
                _ => {
                    return Err(invalid(format!("unknown freezing scenario '{s}': expected one of {}", Freeze::NAMES.join(", "))))
                }
            },
        })
    }
}

impl fmt::Display for Freeze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Freeze::None => f.write_str("none"),
            Freeze::All => f.write_str("all"),
            Freeze::Encoder => f.write_str("encoder"),
            Freeze::Embeddings => f.write_str("embeddings"),
            Freeze::Layers(k) => write!(f, "layers:{k}"),
            Freeze::HeadA => f.write_str("head-a"),
            Freeze::HeadB => f.write_str("head-b"),
            Freeze::Head(n) => write!(f, "head:{n}"),
            Freeze::Heads => f.write_str("heads"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderConfig;
    use crate::data::Labels;
    use crate::model::MultiTask;
    use crate::task::{TaskInfo, TaskKind};

    #[test]
    fn scenario_names_round_trip() {
        for name in ["none", "all", "encoder", "embeddings", "layers:3", "head-a", "head-b", "head:intent", "heads"] {
            assert_eq!(name.parse::<Freeze>().unwrap().to_string(), name);
        }
        assert_eq!("head:task_b".parse::<Freeze>().unwrap(), Freeze::HeadB);
        assert!("head:".parse::<Freeze>().unwrap_err().to_string().contains("task name"));
        assert!("header".parse::<Freeze>().unwrap_err().to_string().contains("unknown freezing scenario"));
        let tasks = vec![
            TaskInfo::classes("task_a", TaskKind::Classification, Labels(vec!["x".into()])),
            TaskInfo::classes("para", TaskKind::PairClassification, Labels(vec!["0".into(), "1".into()])),
            TaskInfo { name: "sts".into(), kind: TaskKind::Similarity, labels: Labels::default(), score_range: None },
        ];
        let m = MultiTask::new(&EncoderConfig::tiny(30), tasks, 0.0, tch::Device::Cpu).unwrap();
        let p = m.params();
        assert!(Freeze::Layers(7).prefixes(p).is_err());
        assert_eq!(Freeze::Layers(2).prefixes(p).unwrap(), vec![EMBEDDINGS, "encoder.encoder.layer.0", "encoder.encoder.layer.1"]);
        assert_eq!(Freeze::Heads.prefixes(p).unwrap(), vec!["classification_head", "heads.para"]);
        assert_eq!(Freeze::All.prefixes(p).unwrap(), vec!["encoder", "classification_head", "heads.para"]);
        assert_eq!(Freeze::Head("para".into()).prefixes(p).unwrap(), vec!["heads.para"]);
        let e = Freeze::Head("sts".into()).prefixes(p).unwrap_err().to_string();
        assert!(e.contains("no head for a task 'sts'"), "{e}");
    }
}
