//! Owns the named freezing scenarios of Task 3: which variable-name prefixes each one freezes,
//! parsed from and printed as the names users type (`encoder`, `layers:3`, ...).

use crate::error::{invalid, Error, Result};
use crate::params::{layer_name, Params, EMBEDDINGS, ENCODER, HEAD_A, HEAD_B};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A named freezing scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Freeze {
    /// Every scenario name as users type it (`K` stands for a layer count).
    pub const NAMES: [&'static str; 7] = ["none", "all", "encoder", "embeddings", "layers:K", "head-a", "head-b"];

    /// The variable-name prefixes this scenario freezes, for a model with `n_layers` layers.
    pub fn prefixes(&self, n_layers: usize) -> Result<Vec<String>> {
        Ok(match *self {
            Freeze::None => vec![],
            Freeze::All => vec![ENCODER.into(), HEAD_A.into(), HEAD_B.into()],
            Freeze::Encoder => vec![ENCODER.into()],
            Freeze::Embeddings => vec![EMBEDDINGS.into()],
            Freeze::Layers(k) => {
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
        for p in self.prefixes(params.n_layers())? {
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
            other => match other.strip_prefix("layers:").map(str::parse::<usize>) {
                Some(Ok(k)) => Freeze::Layers(k),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for name in ["none", "all", "encoder", "embeddings", "layers:3", "head-a", "head-b"] {
            assert_eq!(name.parse::<Freeze>().unwrap().to_string(), name);
        }
        assert!("heads".parse::<Freeze>().unwrap_err().to_string().contains("unknown freezing scenario"));
        assert!(Freeze::Layers(7).prefixes(6).is_err());
        assert_eq!(Freeze::Layers(2).prefixes(6).unwrap(), vec![EMBEDDINGS, "encoder.encoder.layer.0", "encoder.encoder.layer.1"]);
    }
}
