//! A strict pass that rides along with deserialization: it refuses
//! duplicate mapping keys at every level and collects *every* unknown field
//! (with its path) instead of stopping at the first one.
//!
//! Why a wrapper and not `deny_unknown_fields` alone: serde stops at the
//! first unknown field, so two typos took two runs of `keygate check`; and a
//! YAML mapping deserialized into a `BTreeMap` (two `local:` connectors, two
//! tokens of one name) silently keeps the last entry. The wrapper sits
//! between the YAML deserializer and the raw serde types, so the derived
//! code still does all the typing (positions of type errors stay the YAML
//! library's own), while every mapping's keys pass through here first.
//!
//! It is generic over any `serde::Deserializer`: the YAML library stays
//! behind `config::parse_yaml`. A duplicate or unknown key is recorded and
//! its value skipped, so one run reports them all; the caller turns the
//! recorded paths into `LINE:COL` with `locate.rs`. Fields inside untagged
//! enums (value sources in a token request) are checked by serde itself.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};

/// One step of a path from the document root, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A key the strict pass refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `key` appears again in the mapping at `parent`; `nth` counts its
    /// occurrences from 0 (so the first repeat has `nth == 1`).
    Duplicate {
        parent: Vec<Step>,
        key: String,
        nth: usize,
    },
    /// `key` is not a field of the struct at `parent`.
    Unknown {
        parent: Vec<Step>,
        key: String,
        expected: &'static [&'static str],
    },
}

/// Where the problems go while serde drives the pass.
pub type Sink = RefCell<Vec<Problem>>;

/// Deserializes `T` from `de`, recording every duplicate key and unknown
/// field in `sink` (their values are skipped, not deserialized). A type
/// error still stops the pass, as it stops serde.
pub fn deserialize<'de, D, T>(de: D, sink: &Sink) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    T::deserialize(Wrap {
        inner: de,
        path: Path::Root,
        sink,
    })
}

/// The current position as a borrowed chain (no allocation per value).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn steps(&self) -> Vec<Step> {
        let mut out = Vec::new();
        let mut at = self;
        loop {
            match at {
                Path::Root => break,
                Path::Key(parent, k) => {
                    out.push(Step::Key((*k).to_string()));
                    at = parent;
                }
                Path::Index(parent, i) => {
                    out.push(Step::Index(*i));
                    at = parent;
                }
            }
        }
        out.reverse();
        out
    }
}

struct Wrap<'p, D> {
    inner: D,
    path: Path<'p>,
    sink: &'p Sink,
}

impl<'p, D> Wrap<'p, D> {
    fn visitor<V>(&self, inner: V, fields: Option<&'static [&'static str]>) -> WrapVisitor<'p, V> {
        WrapVisitor {
            inner,
            path: self.path,
            sink: self.sink,
            fields,
        }
    }
}

macro_rules! forward {
    ($($method:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let v = self.visitor(visitor, None);
                self.inner.$method($($arg,)* v)
            }
        )*
    };
}

impl<'de, 'p, D: Deserializer<'de>> Deserializer<'de> for Wrap<'p, D> {
    type Error = D::Error;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let v = self.visitor(visitor, Some(fields));
        self.inner.deserialize_struct(name, fields, v)
    }

    /// Walked like any other value so that duplicates inside it are found.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let v = self.visitor(visitor, None);
        self.inner.deserialize_any(v)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

struct WrapSeed<'p, S> {
    seed: S,
    path: Path<'p>,
    sink: &'p Sink,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Wrap {
            inner: de,
            path: self.path,
            sink: self.sink,
        })
    }
}

struct WrapVisitor<'p, V> {
    inner: V,
    path: Path<'p>,
    sink: &'p Sink,
    /// The struct's field names when the target is a struct.
    fields: Option<&'static [&'static str]>,
}

macro_rules! forward_visit {
    ($($method:ident ( $ty:ty );)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for WrapVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Wrap {
            inner: de,
            path: self.path,
            sink: self.sink,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Wrap {
            inner: de,
            path: self.path,
            sink: self.sink,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(WrapSeq {
            inner: seq,
            path: self.path,
            sink: self.sink,
            index: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(WrapMap {
            inner: map,
            path: self.path,
            sink: self.sink,
            fields: self.fields,
            seen: HashMap::new(),
            key: String::new(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(WrapEnum {
            inner: data,
            path: self.path,
            sink: self.sink,
        })
    }
}

struct WrapSeq<'p, A> {
    inner: A,
    path: Path<'p>,
    sink: &'p Sink,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for WrapSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let path = Path::Index(&self.path, self.index);
        let out = self.inner.next_element_seed(WrapSeed {
            seed,
            path,
            sink: self.sink,
        });
        self.index += 1;
        out
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct WrapMap<'p, A> {
    inner: A,
    path: Path<'p>,
    sink: &'p Sink,
    fields: Option<&'static [&'static str]>,
    /// How often each key was seen in this mapping so far.
    seen: HashMap<String, usize>,
    /// The key whose value comes next.
    key: String,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WrapMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key_seed(KeyText)? else {
                return Ok(None);
            };
            let count = self.seen.entry(key.clone()).or_insert(0);
            let nth = *count;
            *count += 1;
            let problem = if nth > 0 {
                Some(Problem::Duplicate {
                    parent: self.path.steps(),
                    key,
                    nth,
                })
            } else if let Some(fields) = self.fields
                && !fields.contains(&key.as_str())
            {
                Some(Problem::Unknown {
                    parent: self.path.steps(),
                    key,
                    expected: fields,
                })
            } else {
                self.key = key;
                None
            };
            match problem {
                Some(p) => {
                    self.sink.borrow_mut().push(p);
                    // Skipped, not walked: positions inside a repeated block
                    // would be located in its first copy.
                    self.inner.next_value::<IgnoredAny>()?;
                }
                None => {
                    return seed
                        .deserialize(self.key.as_str().into_deserializer())
                        .map(Some);
                }
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let path = Path::Key(&self.path, &self.key);
        self.inner.next_value_seed(WrapSeed {
            seed,
            path,
            sink: self.sink,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A mapping key as text: YAML keys here are names, and a plain scalar
/// such as `8080` or `true` is read as the text it was written with.
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        de.deserialize_str(KeyTextVisitor)
    }
}

struct KeyTextVisitor;

impl Visitor<'_> for KeyTextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key written as a plain name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_string())
    }
}

struct WrapEnum<'p, A> {
    inner: A,
    path: Path<'p>,
    sink: &'p Sink,
}

impl<'de, 'p, A: EnumAccess<'de>> EnumAccess<'de> for WrapEnum<'p, A> {
    type Error = A::Error;
    type Variant = WrapVariant<'p, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            WrapVariant {
                inner: variant,
                path: self.path,
                sink: self.sink,
            },
        ))
    }
}

struct WrapVariant<'p, A> {
    inner: A,
    path: Path<'p>,
    sink: &'p Sink,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for WrapVariant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(WrapSeed {
            seed,
            path: self.path,
            sink: self.sink,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            WrapVisitor {
                inner: visitor,
                path: self.path,
                sink: self.sink,
                fields: None,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            WrapVisitor {
                inner: visitor,
                path: self.path,
                sink: self.sink,
                fields: Some(fields),
            },
        )
    }
}

/// serde's own wording for an unknown field, so messages read the same as
/// before this pass existed.
pub fn unknown_field_message(key: &str, expected: &[&str]) -> String {
    match expected {
        [] => format!("unknown field `{key}`, there are no fields"),
        [one] => format!("unknown field `{key}`, expected `{one}`"),
        many => {
            let list: Vec<String> = many.iter().map(|f| format!("`{f}`")).collect();
            format!("unknown field `{key}`, expected one of {}", list.join(", "))
        }
    }
}
