//! Quantities with units as scenarios write them (`1.5ms`, `200KB`, `1Gbit`), and
//! [`Dist`], a distribution of such a quantity.
//!
//! Every parse error says what was expected, with an example, so that a scenario author can
//! fix the file without reading this code.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::rng::Rng;

/// A kind of quantity: how it is written and what its base unit is.
pub trait Quantity {
    /// What the quantity is, for error messages.
    const WHAT: &'static str;
    /// An example of a valid value, for error messages.
    const EXAMPLE: &'static str;
    /// Parses `text` into the base unit.
    fn parse(text: &str) -> Result<f64, String>;
}

/// A span of time; base unit: microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Time {}

/// An amount of data; base unit: bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {}

/// A rate of data; base unit: bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let number: String = number.chars().filter(|c| *c != '_').collect();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    if !value.is_finite() {
        return Err(format!("`{text}` is not a finite number"));
    }
    Ok((value, unit.trim()))
}

impl Quantity for Time {
    const WHAT: &'static str = "a duration";
    const EXAMPLE: &'static str = "`250us`, `1.5ms`, `2s`, `5m` or `1h`";

    fn parse(text: &str) -> Result<f64, String> {
        let (value, unit) = split_number(text)?;
        let scale = match unit {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3600e6,
            "" => return Err(format!("`{text}` has no unit")),
            other => return Err(format!("`{other}` is not a unit of time")),
        };
        Ok(value * scale)
    }
}

impl Quantity for Size {
    const WHAT: &'static str = "a size";
    const EXAMPLE: &'static str = "`512B`, `200KB`, `1.5MB`, `64KiB` or `1GiB`";

    fn parse(text: &str) -> Result<f64, String> {
        let (value, unit) = split_number(text)?;
        let scale = match unit {
            "" | "B" => 1.0,
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            other => return Err(format!("`{other}` is not a unit of size")),
        };
        Ok(value * scale)
    }
}

impl Quantity for Rate {
    const WHAT: &'static str = "a bandwidth";
    const EXAMPLE: &'static str = "`1Gbit`, `100Mbit`, `54Mbit` or `10MB/s`";

    fn parse(text: &str) -> Result<f64, String> {
        let (value, unit) = split_number(text)?;
        let unit = unit.trim_end_matches("/s").trim_end_matches("ps");
        let scale = match unit {
            "Gbit" | "Gb" => 1e9 / 8.0,
            "Mbit" | "Mb" => 1e6 / 8.0,
            "kbit" | "Kbit" | "kb" => 1e3 / 8.0,
            "GB" => 1e9,
            "MB" => 1e6,
            "KB" | "kB" => 1e3,
            "" => return Err(format!("`{text}` has no unit")),
            other => return Err(format!("`{other}` is not a unit of bandwidth")),
        };
        let rate = value * scale;
        if rate <= 0.0 {
            return Err(format!("`{text}` is not a positive bandwidth"));
        }
        Ok(rate)
    }
}

/// A single quantity, such as a bandwidth of `1Gbit`, in its base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value<Q> {
    /// The value in the base unit.
    pub base: f64,
    kind: PhantomData<Q>,
}

impl<Q> Value<Q> {
    /// A value in the base unit.
    pub const fn new(base: f64) -> Value<Q> {
        Value {
            base,
            kind: PhantomData,
        }
    }
}

impl Value<Time> {
    /// The value in whole microseconds.
    pub fn micros(&self) -> u64 {
        self.base.round().max(0.0) as u64
    }
}

impl<'de, Q: Quantity> Deserialize<'de> for Value<Q> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value<Q>, D::Error> {
        struct V<Q>(PhantomData<Q>);
        impl<Q: Quantity> Visitor<'_> for V<Q> {
            type Value = Value<Q>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} such as {}", Q::WHAT, Q::EXAMPLE)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Value<Q>, E> {
                Q::parse(text).map(Value::new).map_err(|why| {
                    E::custom(format!("{why}: write {} such as {}", Q::WHAT, Q::EXAMPLE))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<Q>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<Q>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value<Q>, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A distribution of a quantity, sampled with the simulator's [`Rng`].
///
/// In a scenario, one of:
/// - `"1ms"`: always that value;
/// - `{ uniform = ["0.5ms", "1.5ms"] }`: uniform between the two;
/// - `{ lognormal = "1s", sigma = 0.5 }`: log-normal with that median (sigma of the log);
/// - `{ exp = "1s" }`: exponential with that mean;
///
/// each table optionally with `min` and `max` to clamp the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dist<Q> {
    shape: Shape,
    min: f64,
    max: f64,
    kind: PhantomData<Q>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Constant(f64),
    Uniform(f64, f64),
    LogNormal { median: f64, sigma: f64 },
    Exponential(f64),
}

impl<Q> Dist<Q> {
    /// Always `value` (in the base unit).
    pub const fn constant(value: f64) -> Dist<Q> {
        Dist {
            shape: Shape::Constant(value),
            min: 0.0,
            max: f64::INFINITY,
            kind: PhantomData,
        }
    }

    /// Uniform between `low` and `high`.
    pub fn uniform(low: f64, high: f64) -> Dist<Q> {
        Dist {
            shape: Shape::Uniform(low.min(high), low.max(high)),
            ..Dist::constant(0.0)
        }
    }

    /// Log-normal with the given median and sigma of the log.
    pub fn lognormal(median: f64, sigma: f64) -> Dist<Q> {
        Dist {
            shape: Shape::LogNormal { median, sigma },
            ..Dist::constant(0.0)
        }
    }

    /// Exponential with the given mean.
    pub fn exponential(mean: f64) -> Dist<Q> {
        Dist {
            shape: Shape::Exponential(mean),
            ..Dist::constant(0.0)
        }
    }

    /// Clamps samples to `[min, max]`.
    pub fn clamped(mut self, min: f64, max: f64) -> Dist<Q> {
        self.min = min.max(0.0);
        self.max = max.max(self.min);
        self
    }

    /// One sample, in the base unit, never negative.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        let value = match self.shape {
            Shape::Constant(v) => v,
            Shape::Uniform(low, high) => low + (high - low) * rng.unit(),
            Shape::LogNormal { median, sigma } => median * (sigma * rng.normal()).exp(),
            Shape::Exponential(mean) => rng.exponential(mean),
        };
        value.clamp(self.min, self.max)
    }

    /// The mean, before clamping (for lower bounds and reports).
    pub fn mean(&self) -> f64 {
        match self.shape {
            Shape::Constant(v) => v,
            Shape::Uniform(low, high) => (low + high) / 2.0,
            Shape::LogNormal { median, sigma } => median * (sigma * sigma / 2.0).exp(),
            Shape::Exponential(mean) => mean,
        }
        .clamp(self.min, self.max)
    }

    /// The smallest value a sample can take.
    pub fn lowest(&self) -> f64 {
        match self.shape {
            Shape::Constant(v) => v.clamp(self.min, self.max),
            Shape::Uniform(low, _) => low.clamp(self.min, self.max),
            Shape::LogNormal { .. } | Shape::Exponential(_) => self.min,
        }
    }

    /// Whether every sample is zero.
    pub fn is_zero(&self) -> bool {
        matches!(self.shape, Shape::Constant(v) if v <= 0.0) || self.max <= 0.0
    }
}

const DIST_FORMS: &str = "a value (`\"1ms\"`), `{ uniform = [\"1ms\", \"2ms\"] }`, \
     `{ lognormal = \"1s\", sigma = 0.5 }` or `{ exp = \"1s\" }`, each table optionally with \
     `min` and `max`";

impl<'de, Q: Quantity> Deserialize<'de> for Dist<Q> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Dist<Q>, D::Error> {
        struct V<Q>(PhantomData<Q>);
        impl<'de, Q: Quantity> Visitor<'de> for V<Q> {
            type Value = Dist<Q>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a distribution of {}: {DIST_FORMS}", Q::WHAT)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Dist<Q>, E> {
                let value = Q::parse(text).map_err(|why| {
                    E::custom(format!("{why}: write {} such as {}", Q::WHAT, Q::EXAMPLE))
                })?;
                Ok(Dist::constant(value))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dist<Q>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dist<Q>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dist<Q>, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dist<Q>, A::Error> {
                let mut shape: Option<Shape> = None;
                let mut sigma: Option<f64> = None;
                let mut min = 0.0;
                let mut max = f64::INFINITY;
                let set = |shape: &mut Option<Shape>, new: Shape| -> Result<(), A::Error> {
                    if shape.is_some() {
                        return Err(de::Error::custom(format!(
                            "a distribution has exactly one of `constant`, `uniform`, \
                             `lognormal` and `exp`; write {DIST_FORMS}"
                        )));
                    }
                    *shape = Some(new);
                    Ok(())
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "constant" => {
                            let v: Value<Q> = map.next_value()?;
                            set(&mut shape, Shape::Constant(v.base))?;
                        }
                        "uniform" => {
                            let [low, high]: [Value<Q>; 2] = map.next_value()?;
                            if low.base > high.base {
                                return Err(de::Error::custom(
                                    "`uniform`: the first bound must not exceed the second",
                                ));
                            }
                            set(&mut shape, Shape::Uniform(low.base, high.base))?;
                        }
                        "lognormal" => {
                            let v: Value<Q> = map.next_value()?;
                            set(
                                &mut shape,
                                Shape::LogNormal {
                                    median: v.base,
                                    sigma: 0.0,
                                },
                            )?;
                        }
                        "exp" => {
                            let v: Value<Q> = map.next_value()?;
                            set(&mut shape, Shape::Exponential(v.base))?;
                        }
                        "sigma" => {
                            let v: f64 = map.next_value()?;
                            if !(v.is_finite() && v >= 0.0) {
                                return Err(de::Error::custom(
                                    "`sigma` must be a number of at least 0, such as 0.5",
                                ));
                            }
                            sigma = Some(v);
                        }
                        "min" => min = map.next_value::<Value<Q>>()?.base,
                        "max" => max = map.next_value::<Value<Q>>()?.base,
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a distribution; write {DIST_FORMS}"
                            )));
                        }
                    }
                }
                let shape = match (shape, sigma) {
                    (Some(Shape::LogNormal { median, .. }), sigma) => Shape::LogNormal {
                        median,
                        sigma: sigma.unwrap_or(0.5),
                    },
                    (Some(_), Some(_)) => {
                        return Err(de::Error::custom(
                            "`sigma` belongs to a `lognormal` distribution only",
                        ));
                    }
                    (Some(shape), None) => shape,
                    (None, _) => {
                        return Err(de::Error::custom(format!(
                            "the distribution names no shape; write {DIST_FORMS}"
                        )));
                    }
                };
                if min > max {
                    return Err(de::Error::custom("`min` must not exceed `max`"));
                }
                Ok(Dist {
                    shape,
                    min,
                    max,
                    kind: PhantomData,
                })
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// Formats microseconds for reports: `850us`, `12.3ms`, `4.56s`, `2m03s`.
pub(crate) fn show_micros(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros}us")
    } else if micros < 1_000_000 {
        format!("{:.1}ms", micros as f64 / 1e3)
    } else if micros < 120_000_000 {
        format!("{:.2}s", micros as f64 / 1e6)
    } else {
        let secs = micros / 1_000_000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Formats bytes for reports: `512 B`, `1.2 KB`, `3.4 MB`, `5.6 GB`.
pub(crate) fn show_bytes(bytes: f64) -> String {
    if bytes < 1e3 {
        format!("{bytes:.0} B")
    } else if bytes < 1e6 {
        format!("{:.1} KB", bytes / 1e3)
    } else if bytes < 1e9 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.2} GB", bytes / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        d: Dist<Time>,
    }

    fn dist(text: &str) -> Result<Dist<Time>, String> {
        toml::from_str::<T>(&format!("d = {text}"))
            .map(|t| t.d)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn quantities_parse_with_their_units() {
        assert_eq!(Time::parse("1.5ms"), Ok(1500.0));
        assert_eq!(Time::parse("2s"), Ok(2e6));
        assert_eq!(Size::parse("200KB"), Ok(200e3));
        assert_eq!(Size::parse("1MiB"), Ok(1048576.0));
        assert_eq!(Rate::parse("1Gbit"), Ok(125e6));
        assert_eq!(Rate::parse("10MB/s"), Ok(10e6));
        assert!(Time::parse("10").expect_err("an error").contains("no unit"));
        assert!(
            Time::parse("ten s")
                .expect_err("an error")
                .contains("number")
        );
        assert!(
            Rate::parse("1 furlong")
                .expect_err("an error")
                .contains("furlong")
        );
    }

    #[test]
    fn distributions_parse_in_every_form() {
        let mut rng = Rng::new(1);
        assert_eq!(dist("\"1ms\"").map(|d| d.sample(&mut rng)), Ok(1000.0));
        let u = dist("{ uniform = [\"1ms\", \"2ms\"] }").expect("uniform");
        let v = u.sample(&mut rng);
        assert!((1000.0..=2000.0).contains(&v));
        let l = dist("{ lognormal = \"1s\", sigma = 0.5, max = \"3s\" }").expect("lognormal");
        assert!((0..1000).all(|_| l.sample(&mut rng) <= 3e6));
        assert!(dist("{ exp = \"1s\" }").is_ok());
    }

    #[test]
    fn bad_distributions_say_what_to_write() {
        let e = dist("{ gauss = \"1s\" }").expect_err("an error");
        assert!(
            e.contains("unknown key `gauss`") && e.contains("lognormal"),
            "{e}"
        );
        let e = dist("{ sigma = 0.5 }").expect_err("an error");
        assert!(e.contains("names no shape"), "{e}");
        let e = dist("\"5 parsecs\"").expect_err("an error");
        assert!(e.contains("parsecs") && e.contains("1.5ms"), "{e}");
        let e = dist("{ uniform = [\"2ms\", \"1ms\"] }").expect_err("an error");
        assert!(e.contains("must not exceed"), "{e}");
    }
}
