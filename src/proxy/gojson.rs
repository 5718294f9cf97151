//! JSON as dockerd's Go `encoding/json` decoder sees it.
//!
//! Go matches struct field names case-insensitively with Unicode simple folding
//! (`ſ` is `s`, the Kelvin sign is `k`), lets the last duplicate win, merges
//! repeated objects into the same struct or map, and ignores `null` for
//! non-nullable fields. A proxy that reads a body any other way can be told one
//! thing while dockerd does another. So the proxy keeps every entry of every
//! object, in order ([`Json`]), and resolves fields with Go's rules ([`decode_struct`]).

#![forbid(unsafe_code)]

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The most values (scalars, arrays and objects; not keys) a body may hold.
///
/// A parsed value costs 32 bytes (56 with its key in an object) however short
/// its text (`0,` is two bytes), so the count, not the body's size, bounds
/// what a body costs in memory: 262,144 values are at most 8 MiB of nodes
/// (14 MiB as object entries), the size of the body limit. Real requests hold
/// tens of values (`docker run`), a few hundred at most (compose, services).
pub const MAX_VALUES: usize = 1 << 18;

/// A JSON document with every object entry kept, duplicates included, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Json {
    #[default]
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a body is not a [`Json`] the proxy will read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Syntax(#[from] serde_json::Error),
    #[error("the request body has more than {MAX_VALUES} JSON values")]
    TooManyValues,
}

impl Json {
    /// Parses a body of at most [`MAX_VALUES`] values. A first pass counts
    /// the values (refusing too many before anything is built) and the
    /// length of every array and object; the second builds the tree with
    /// those exact capacities, so it holds no spare room.
    pub fn parse(bytes: &[u8]) -> Result<Json, ParseError> {
        let mut count = Count::default();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let counted = Counter(&mut count)
            .deserialize(&mut de)
            .and_then(|()| de.end());
        if count.values > MAX_VALUES {
            return Err(ParseError::TooManyValues);
        }
        counted?;
        let mut next = 0;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let json = Builder {
            lengths: &count.lengths,
            next: &mut next,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(json)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialising an in-memory JSON tree cannot fail")
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Work done by the decoder (entries visited, field names compared, map keys
/// indexed), counted in unit tests so they can assert complexity without
/// timing anything; nothing outside tests.
mod work {
    #[cfg(test)]
    thread_local!(static DONE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });

    #[inline(always)]
    pub(super) fn add(_n: u64) {
        #[cfg(test)]
        DONE.with(|done| done.set(done.get() + _n));
    }

    /// The work `f` did on this thread.
    #[cfg(test)]
    pub(super) fn of<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = DONE.with(|done| done.get());
        let out = f();
        (out, DONE.with(|done| done.get()) - before)
    }
}

/// Folds a key the way Go's `encoding/json` does before comparing it with a
/// field name: ASCII upper case, and every other rune to the smallest rune of
/// its simple-fold orbit. Field names are ASCII, and the only non-ASCII runes
/// whose orbit reaches ASCII are `ſ` (to `S`) and the Kelvin sign (to `K`);
/// any other rune can never match, so it is kept as it is.
pub fn fold(key: &str) -> String {
    key.chars().map(fold_char).collect()
}

/// `fold(a) == fold(b)`, without allocating.
pub fn fold_eq(a: &str, b: &str) -> bool {
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

fn fold_char(c: char) -> char {
    match c {
        '\u{017F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    }
}

/// How Go decodes one field's value, which decides what a repeated key does.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// bool, number or string: a later value replaces, `null` changes nothing.
    Scalar,
    /// A pointer to a bool, number or string: a later value replaces, `null`
    /// resets it to nil.
    Nullable,
    /// A slice (of strings, or of values the proxy does not inspect): a later
    /// array is decoded into the elements already there (see [`SliceAcc`]),
    /// `null` resets it.
    Slice,
    /// A slice of structs: as [`Kind::Slice`], a later array merges into the
    /// structs already there element by element.
    SliceOf(&'static [Field]),
    /// A slice of pointers to structs: as [`Kind::SliceOf`], but a `null`
    /// element resets that element to nil.
    SliceOfPointers(&'static [Field]),
    /// A fixed-size array of numbers (`[2]uint`): extra elements are skipped,
    /// missing ones zeroed, `null` changes nothing.
    Array(usize),
    /// A pointer to a fixed-size array: as [`Kind::Array`], `null` resets it.
    ArrayPointer(usize),
    /// A map: a later object adds to it (exact keys, last wins), `null` resets it.
    Map,
    /// A map of structs: as [`Kind::Map`], each value decoded as a fresh struct.
    MapOf(&'static [Field]),
    /// A struct value: a later object merges into it, `null` changes nothing.
    Struct(&'static [Field]),
    /// A pointer to a struct: a later object merges into it, `null` resets it.
    Pointer(&'static [Field]),
    /// A value whose structure the proxy does not inspect: the last one is kept.
    Opaque,
}

/// A struct field: its canonical name and how it decodes.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

pub const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// A value that does not have the type dockerd would decode it into.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} must be {expected}, not {found}", if path.is_empty() { "the body" } else { path })]
pub struct TypeError {
    /// Where, from the decoded object: `HostConfig.CapAdd`, `HostConfig.Mounts[0].Type`.
    pub path: String,
    pub expected: &'static str,
    pub found: &'static str,
}

/// An object decoded into a struct: the fields dockerd would see, and the
/// paths of the keys that match no field, at any depth (dockerd ignores them;
/// the proxy leaves them out, or refuses them). A map key longer than 64
/// bytes is abbreviated in a path (`M["kkk…"…].x`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub fields: Vec<(String, Json)>,
    pub unknown: Vec<String>,
}

/// Decodes an object into a struct with Go's rules. Keys that match a field
/// (by [`fold`]) come out once, under the field's canonical name, holding the
/// value dockerd would end up with.
///
/// The work is linear in the size of `value` (times the size of the field
/// tables): repeated objects merge into what earlier ones decoded, map keys
/// are indexed. Values are moved out of `value`, never copied, so the
/// decoded body costs little more than the parsed one: a map or a slice that
/// comes once is the parsed one itself.
pub fn decode_struct(mut value: Json, fields: &[Field]) -> Result<Decoded, TypeError> {
    let Json::Object(entries) = &mut value else {
        return Err(type_error(&String::new, "an object", &value));
    };
    let mut unknown = Vec::new();
    let mut slots = Vec::new();
    Decoder {
        unknown: &mut unknown,
    }
    .merge(&mut slots, entries, fields, &String::new)?;
    Ok(Decoded {
        fields: build_struct(slots, fields),
        unknown,
    })
}

/// Where a value sits, built only when an error or an unknown key needs it.
type Path<'a> = &'a dyn Fn() -> String;

fn child(parent: &str, name: &str) -> String {
    match parent {
        "" => name.to_string(),
        parent => format!("{parent}.{name}"),
    }
}

/// A map key as it is shown in a path: abbreviated when long, so that the
/// paths of many keys under one long map key cost no more than the keys.
fn key_in_path(key: &str) -> String {
    const SHOWN: usize = 64;
    if key.len() <= SHOWN {
        return format!("[{key:?}]");
    }
    let mut end = SHOWN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("[{:?}…]", &key[..end])
}

/// What the occurrences of one field have left so far, borrowing the parsed
/// body; values are moved out of it by [`build`].
enum Acc<'j> {
    /// Present with no effect yet (a scalar or struct set to null): left out.
    Unset,
    /// The last value (a scalar, opaque value, or a reset to null).
    Last(&'j mut Json),
    /// A slice of values that came once: the parsed array as it is.
    Whole(&'j mut Vec<Json>),
    /// A slice or a fixed-size array, element by element.
    Slice(SliceAcc<'j>),
    /// A map: its objects in order, merged by [`merge_map`] when built.
    Map(Vec<&'j mut Vec<(String, Json)>>),
    /// A map of structs, its values decoded.
    MapOf(MapAcc<'j, (&'j str, Json)>),
    /// A struct: its fields so far, in the order they first came.
    Struct(Vec<Slot<'j>>, &'static [Field]),
}

/// A field of a struct being decoded: its index in the field table, and what it holds.
type Slot<'j> = (usize, Acc<'j>);

/// A slice between occurrences of its key, as Go's decoder keeps it: the
/// backing array and the length. Go decodes a later array into the elements
/// already there (a struct merges; `null` leaves a string or a struct as it
/// was), and `SetLen` brings back the elements a shorter array left past the
/// length, so the whole backing array is kept (`encoding/json` `array`).
struct SliceAcc<'j> {
    backing: Vec<Elem<'j>>,
    len: usize,
}

/// One element of a [`SliceAcc`].
enum Elem<'j> {
    /// The zero value: a fresh element, or a pointer element reset to nil.
    Zero,
    /// A string, number, or a value the proxy does not inspect, as it came.
    Value(&'j mut Json),
    /// A struct element's fields so far.
    Struct(Vec<Slot<'j>>),
}

impl<'j> SliceAcc<'j> {
    fn nil() -> Self {
        SliceAcc {
            backing: Vec::new(),
            len: 0,
        }
    }

    /// A nil slice with an array of values decoded into it.
    fn of_values(items: &'j mut [Json]) -> Self {
        let mut slice = SliceAcc::nil();
        for (i, item) in items.iter_mut().enumerate() {
            slice.grow_to(i);
            decode_value_element(&mut slice.backing[i], item);
        }
        slice
    }

    /// Makes room for element `i` as `reflect`'s growth does: a new backing
    /// array of `cap + cap/2` (at least 4) holding only the first `len`.
    fn grow_to(&mut self, i: usize) {
        if i >= self.backing.len() {
            let cap = self.backing.len();
            self.backing.truncate(self.len);
            self.backing
                .resize_with((cap + cap / 2).max(4), || Elem::Zero);
        }
        self.len = self.len.max(i + 1);
    }
}

/// A map's entries (each key once) and where each key is among them.
struct MapAcc<'j, E> {
    entries: Vec<E>,
    index: HashMap<&'j str, u32>,
}

impl<'j, E> MapAcc<'j, E> {
    /// For an object of `len` entries: no spare room when it is the only one.
    fn with_capacity(len: usize) -> Self {
        MapAcc {
            entries: Vec::with_capacity(len),
            index: HashMap::with_capacity(len),
        }
    }

    /// Exact keys, the last value wins, the first position stays.
    fn insert(&mut self, key: &'j str, entry: E) {
        work::add(1);
        match self.index.entry(key) {
            Entry::Occupied(at) => self.entries[*at.get() as usize] = entry,
            Entry::Vacant(at) => {
                at.insert(self.entries.len() as u32);
                self.entries.push(entry);
            }
        }
    }
}

struct Decoder<'u> {
    unknown: &'u mut Vec<String>,
}

impl<'j> Decoder<'_> {
    /// Applies one object's entries to a struct's fields so far.
    fn merge(
        &mut self,
        slots: &mut Vec<Slot<'j>>,
        entries: &'j mut [(String, Json)],
        fields: &[Field],
        path: Path,
    ) -> Result<(), TypeError> {
        // Built once, and only if a key is unknown or a value is wrong.
        let mut parent: Option<String> = None;
        for (key, value) in entries {
            let key: &str = key;
            let Some(index) = field_index(fields, key) else {
                let parent = parent.get_or_insert_with(path);
                self.unknown.push(child(parent, key));
                continue;
            };
            work::add(slots.len() as u64);
            let at = match slots.iter().position(|(i, _)| *i == index) {
                Some(at) => at,
                None => {
                    slots.push((index, Acc::Unset));
                    slots.len() - 1
                }
            };
            let field = &fields[index];
            self.assign(&mut slots[at].1, value, field.kind, &|| {
                child(parent.clone().unwrap_or_else(path).as_str(), field.name)
            })?;
        }
        Ok(())
    }

    /// Applies one occurrence of a field to what earlier occurrences left.
    fn assign(
        &mut self,
        slot: &mut Acc<'j>,
        value: &'j mut Json,
        kind: Kind,
        path: Path,
    ) -> Result<(), TypeError> {
        match (kind, value) {
            (Kind::Opaque, value) => *slot = Acc::Last(value),
            (Kind::Scalar, Json::Null) => {}
            (Kind::Scalar | Kind::Nullable, value @ (Json::Array(_) | Json::Object(_))) => {
                return Err(type_error(path, "a boolean, number or string", value))
            }
            (Kind::Scalar, value) => *slot = Acc::Last(value),
            (Kind::Nullable, Json::Null) => *slot = Acc::Unset,
            (Kind::Nullable, value) => *slot = Acc::Last(value),
            (Kind::Struct(_) | Kind::Array(_), Json::Null) => {}
            (
                Kind::Slice
                | Kind::SliceOf(_)
                | Kind::SliceOfPointers(_)
                | Kind::ArrayPointer(_)
                | Kind::Map
                | Kind::MapOf(_)
                | Kind::Pointer(_),
                value @ Json::Null,
            ) => *slot = Acc::Last(value),
            (Kind::Slice | Kind::SliceOf(_) | Kind::SliceOfPointers(_), Json::Array(items)) => {
                if matches!(kind, Kind::Slice) && !matches!(slot, Acc::Whole(_) | Acc::Slice(_)) {
                    *slot = Acc::Whole(items);
                } else {
                    let slice = take_slice(slot);
                    self.decode_slice(slice, items, kind, path)?;
                }
            }
            (Kind::Array(len) | Kind::ArrayPointer(len), Json::Array(items)) => {
                let array = take_slice(slot);
                if array.backing.is_empty() {
                    array.backing.resize_with(len, || Elem::Zero);
                    array.len = len;
                }
                let given = items.len();
                for (element, item) in array.backing.iter_mut().zip(items) {
                    decode_value_element(element, item);
                }
                // Go zeroes what the array did not reach.
                for element in array.backing.iter_mut().skip(given) {
                    *element = Elem::Zero;
                }
            }
            (Kind::Map, Json::Object(entries)) => match slot {
                Acc::Map(objects) => objects.push(entries),
                slot => *slot = Acc::Map(vec![entries]),
            },
            (Kind::MapOf(fields), Json::Object(entries)) => {
                if !matches!(slot, Acc::MapOf(_)) {
                    *slot = Acc::MapOf(MapAcc::with_capacity(entries.len()));
                }
                let Acc::MapOf(map) = slot else {
                    unreachable!()
                };
                for (key, value) in entries {
                    let key: &str = key;
                    let value =
                        self.element(value, fields, &|| format!("{}{}", path(), key_in_path(key)))?;
                    map.insert(key, (key, value));
                }
            }
            (Kind::Struct(fields) | Kind::Pointer(fields), Json::Object(entries)) => {
                if !matches!(slot, Acc::Struct(..)) {
                    *slot = Acc::Struct(Vec::new(), fields);
                }
                let Acc::Struct(slots, _) = slot else {
                    unreachable!()
                };
                self.merge(slots, entries, fields, path)?;
            }
            (
                Kind::Slice
                | Kind::SliceOf(_)
                | Kind::SliceOfPointers(_)
                | Kind::Array(_)
                | Kind::ArrayPointer(_),
                value,
            ) => return Err(type_error(path, "an array", value)),
            (Kind::Map | Kind::MapOf(_) | Kind::Struct(_) | Kind::Pointer(_), value) => {
                return Err(type_error(path, "an object", value))
            }
        }
        Ok(())
    }

    /// Decodes an array into a slice as Go does: element `i` into the
    /// element already at `i`, the length set to the array's.
    fn decode_slice(
        &mut self,
        slice: &mut SliceAcc<'j>,
        items: &'j mut [Json],
        kind: Kind,
        path: Path,
    ) -> Result<(), TypeError> {
        if items.is_empty() {
            // A fresh, empty (non-nil) slice: nothing past it survives.
            *slice = SliceAcc::nil();
            return Ok(());
        }
        let len = items.len();
        for (i, item) in items.iter_mut().enumerate() {
            slice.grow_to(i);
            let element = &mut slice.backing[i];
            match kind {
                Kind::SliceOf(fields) | Kind::SliceOfPointers(fields) => {
                    let pointers = matches!(kind, Kind::SliceOfPointers(_));
                    self.decode_struct_element(element, item, fields, pointers, &|| {
                        format!("{}[{i}]", path())
                    })?
                }
                _ => decode_value_element(element, item),
            }
        }
        slice.len = len;
        Ok(())
    }

    /// One element of a slice of structs (or of pointers to structs),
    /// decoded into what is already there.
    fn decode_struct_element(
        &mut self,
        element: &mut Elem<'j>,
        item: &'j mut Json,
        fields: &[Field],
        pointers: bool,
        path: Path,
    ) -> Result<(), TypeError> {
        match item {
            Json::Null if pointers => *element = Elem::Zero,
            Json::Null => {}
            Json::Object(entries) => {
                if !matches!(element, Elem::Struct(_)) {
                    *element = Elem::Struct(Vec::new());
                }
                let Elem::Struct(slots) = element else {
                    unreachable!()
                };
                self.merge(slots, entries, fields, path)?;
            }
            item => return Err(type_error(path, "an object", item)),
        }
        Ok(())
    }

    /// One element of a slice or map of structs: a fresh struct (`null` is its zero value).
    fn element(
        &mut self,
        item: &'j mut Json,
        fields: &[Field],
        path: Path,
    ) -> Result<Json, TypeError> {
        match item {
            Json::Null => Ok(Json::Object(Vec::new())),
            Json::Object(entries) => {
                let mut slots = Vec::new();
                self.merge(&mut slots, entries, fields, path)?;
                Ok(Json::Object(build_struct(slots, fields)))
            }
            item => Err(type_error(path, "an object", item)),
        }
    }
}

/// The slice a slot holds, made a nil one first if it holds none.
fn take_slice<'a, 'j>(slot: &'a mut Acc<'j>) -> &'a mut SliceAcc<'j> {
    *slot = match std::mem::replace(slot, Acc::Unset) {
        Acc::Slice(slice) => Acc::Slice(slice),
        Acc::Whole(items) => Acc::Slice(SliceAcc::of_values(items)),
        _ => Acc::Slice(SliceAcc::nil()),
    };
    let Acc::Slice(slice) = slot else {
        unreachable!()
    };
    slice
}

/// An element that is not a struct: `null` leaves a string or number as it
/// was, but resets a nested slice to nil; anything else replaces it.
fn decode_value_element<'j>(element: &mut Elem<'j>, item: &'j mut Json) {
    match (&*item, &element) {
        (Json::Null, Elem::Value(Json::Array(_))) => *element = Elem::Zero,
        (Json::Null, _) => {}
        _ => *element = Elem::Value(item),
    }
}

/// The field a key names: Go's case-insensitive match, O(fields).
fn field_index(fields: &[Field], key: &str) -> Option<usize> {
    // Field names are ASCII: an ASCII key needs no folding beyond case.
    let ascii = key.is_ascii();
    let found = fields.iter().position(|f| match ascii {
        true => f.name.len() == key.len() && f.name.eq_ignore_ascii_case(key),
        false => fold_eq(f.name, key),
    });
    work::add(found.map_or(fields.len(), |i| i + 1) as u64);
    found
}

/// A struct's fields as dockerd ends up with them, under their canonical names.
fn build_struct(slots: Vec<Slot>, fields: &[Field]) -> Vec<(String, Json)> {
    let mut out = Vec::with_capacity(slots.len());
    for (index, acc) in slots {
        if let Some(value) = build(acc, fields[index].kind) {
            out.push((fields[index].name.to_string(), value));
        }
    }
    out
}

fn build(acc: Acc, kind: Kind) -> Option<Json> {
    match acc {
        Acc::Unset => None,
        Acc::Last(value) => Some(std::mem::take(value)),
        Acc::Whole(items) => Some(Json::Array(std::mem::take(items))),
        Acc::Slice(mut slice) => {
            slice.backing.truncate(slice.len);
            let elements = slice.backing.into_iter();
            Some(Json::Array(
                elements.map(|e| build_element(e, kind)).collect(),
            ))
        }
        Acc::Map(objects) => Some(Json::Object(merge_map(objects))),
        Acc::MapOf(map) => {
            drop(map.index);
            let entries = map.entries.into_iter();
            Some(Json::Object(
                entries.map(|(k, v)| (k.to_string(), v)).collect(),
            ))
        }
        Acc::Struct(slots, fields) => Some(Json::Object(build_struct(slots, fields))),
    }
}

/// An element as dockerd ends up with it; a zero one is written so that Go
/// decodes it to the zero value again (`{}` for a struct, `null` otherwise).
fn build_element(element: Elem, kind: Kind) -> Json {
    match (element, kind) {
        (Elem::Zero, Kind::SliceOf(_)) => Json::Object(Vec::new()),
        (Elem::Zero, Kind::Array(_) | Kind::ArrayPointer(_)) => Json::Number(0.into()),
        (Elem::Zero, _) => Json::Null,
        (Elem::Value(value), _) => std::mem::take(value),
        (Elem::Struct(slots), Kind::SliceOf(fields) | Kind::SliceOfPointers(fields)) => {
            Json::Object(build_struct(slots, fields))
        }
        (Elem::Struct(_), _) => unreachable!("struct elements belong to slices of structs"),
    }
}

/// A map's objects merged as Go merges them into one map: exact keys, each
/// once where it first came, with its last value. The entries are moved, the
/// first object's in place.
fn merge_map(objects: Vec<&mut Vec<(String, Json)>>) -> Vec<(String, Json)> {
    let mut objects = objects.into_iter();
    let mut entries = objects.next().map(std::mem::take).unwrap_or_default();
    for object in objects {
        entries.append(object);
    }
    let later = repeated_keys(&entries);
    if later.is_empty() {
        return entries;
    }
    let mut repeat = vec![false; entries.len()];
    for (first, at) in later {
        entries[first].1 = std::mem::take(&mut entries[at].1);
        repeat[at] = true;
    }
    let mut at = 0;
    entries.retain(|_| {
        at += 1;
        !repeat[at - 1]
    });
    entries
}

/// Each entry whose key came before, with where it first came, in order.
/// The index holds positions only (4 bytes an entry), hashing the keys where they are.
fn repeated_keys(entries: &[(String, Json)]) -> Vec<(usize, usize)> {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let hash = |at: usize| state.hash_one(entries[at].0.as_str());
    let mut index = hashbrown::HashTable::<u32>::with_capacity(entries.len());
    let mut later = Vec::new();
    for (at, (key, _)) in entries.iter().enumerate() {
        work::add(1);
        let hashed = hash(at);
        match index.find(hashed, |&first| entries[first as usize].0 == *key) {
            Some(&first) => later.push((first as usize, at)),
            None => {
                index.insert_unique(hashed, at as u32, |&i| hash(i as usize));
            }
        }
    }
    later
}

fn type_error(path: Path, expected: &'static str, found: &Json) -> TypeError {
    TypeError {
        path: path(),
        expected,
        found: found.type_name(),
    }
}

/// The value of `name` in an object decoded by [`decode_struct`].
pub fn get<'a>(entries: &'a [(String, Json)], name: &str) -> Option<&'a Json> {
    entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The first pass: counts values, and records the length of each array and
/// object in the order they open (the order the second pass meets them).
#[derive(Default)]
struct Count {
    values: usize,
    lengths: Vec<u32>,
}

struct Counter<'c>(&'c mut Count);

impl Counter<'_> {
    fn value<E: de::Error>(self) -> Result<(), E> {
        self.0.values += 1;
        work::add(1);
        match self.0.values > MAX_VALUES {
            true => Err(E::custom("too many values")),
            false => Ok(()),
        }
    }

    /// Counts a container itself; returns where its length goes.
    fn open<E: de::Error>(&mut self) -> Result<usize, E> {
        Counter(self.0).value()?;
        self.0.lengths.push(0);
        Ok(self.0.lengths.len() - 1)
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.value()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.value()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.value()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.value()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.value()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.value()
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let at = self.open()?;
        let mut length = 0u32;
        while let Some(()) = seq.next_element_seed(Counter(&mut *self.0))? {
            length += 1;
        }
        self.0.lengths[at] = length;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let at = self.open()?;
        let mut length = 0u32;
        while let Some(IgnoredAny) = map.next_key()? {
            map.next_value_seed(Counter(&mut *self.0))?;
            length += 1;
        }
        self.0.lengths[at] = length;
        Ok(())
    }
}

/// The second pass: builds the tree, each array and object with the length
/// the first pass counted.
struct Builder<'c> {
    lengths: &'c [u32],
    next: &'c mut usize,
}

impl Builder<'_> {
    fn capacity(&mut self) -> usize {
        let length = self.lengths.get(*self.next).copied().unwrap_or(0);
        *self.next += 1;
        length as usize
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_> {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Builder<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(self.capacity());
        while let Some(item) = seq.next_element_seed(Builder {
            lengths: self.lengths,
            next: &mut *self.next,
        })? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::with_capacity(self.capacity());
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Builder {
                lengths: self.lengths,
                next: &mut *self.next,
            })?;
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            // `-0` parses as the float -0.0, which Go cannot decode into an
            // integer field the way it decoded `-0`: zero is written `0`.
            Json::Number(n) if n.as_f64() == Some(0.0) => serializer.serialize_u64(0),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_survive_a_second_round_trip() {
        // Found by the fuzz target: without serde_json's float_roundtrip, a
        // float printed by the proxy parsed back to a neighbouring value, so
        // forwarding a forwarded body changed it.
        let once = Json::parse(b"[1.04855555555555555557e32, 0.1, 1e-7]")
            .unwrap()
            .to_vec();
        assert_eq!(Json::parse(&once).unwrap().to_vec(), once);
    }

    const INNER: &[Field] = &[
        field("Privileged", Kind::Scalar),
        field("CapAdd", Kind::Slice),
        field("Labels", Kind::Map),
    ];
    const OUTER: &[Field] = &[
        field("Image", Kind::Scalar),
        field("HostConfig", Kind::Struct(INNER)),
    ];

    fn decode(text: &str, fields: &[Field]) -> Json {
        Json::Object(
            decode_struct(Json::parse(text.as_bytes()).unwrap(), fields)
                .unwrap()
                .fields,
        )
    }

    fn text(value: &Json) -> String {
        String::from_utf8(value.to_vec()).unwrap()
    }

    #[test]
    fn fold_matches_go_for_long_s_and_kelvin() {
        assert_eq!(fold("privileged"), "PRIVILEGED");
        assert_eq!(fold("Bind\u{017F}"), "BINDS");
        assert_eq!(fold("\u{212A}ernelMemory"), "KERNELMEMORY");
        assert_ne!(
            fold("Priv\u{0131}leged"),
            "PRIVILEGED",
            "dotless i does not fold to i"
        );
    }

    #[test]
    fn field_names_match_case_insensitively_and_come_out_canonical() {
        let v = decode(r#"{"hostconfig":{"PRIVILEGED":true}}"#, OUTER);
        assert_eq!(text(&v), r#"{"HostConfig":{"Privileged":true}}"#);
    }

    #[test]
    fn last_duplicate_wins_across_spellings() {
        let v = decode(
            r#"{"HostConfig":{"privileged":false,"Privileged":true,"privileged":false}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Privileged":false}}"#);
    }

    #[test]
    fn null_does_not_reset_a_scalar() {
        let v = decode(
            r#"{"HostConfig":{"Privileged":true,"privileged":null}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Privileged":true}}"#);
    }

    #[test]
    fn null_resets_a_slice() {
        let v = decode(r#"{"HostConfig":{"CapAdd":["ALL"],"capadd":null}}"#, OUTER);
        assert_eq!(text(&v), r#"{"HostConfig":{"CapAdd":null}}"#);
    }

    #[test]
    fn repeated_structs_merge_like_go() {
        let v = decode(
            r#"{"HostConfig":{"Privileged":true},"hostconfig":{"CapAdd":[]}}"#,
            OUTER,
        );
        assert_eq!(
            text(&v),
            r#"{"HostConfig":{"Privileged":true,"CapAdd":[]}}"#
        );
    }

    const MOUNT: &[Field] = &[field("Type", Kind::Scalar), field("Target", Kind::Scalar)];
    const SLICES: &[Field] = &[
        field("Binds", Kind::Slice),
        field("Mounts", Kind::SliceOf(MOUNT)),
        field("Ulimits", Kind::SliceOfPointers(MOUNT)),
        field("ConsoleSize", Kind::Array(2)),
        field("PidsLimit", Kind::Nullable),
        field("Init", Kind::Nullable),
    ];

    #[test]
    fn null_resets_a_pointer_to_a_scalar() {
        let v = decode(r#"{"PidsLimit":5,"pidslimit":null,"Init":true}"#, SLICES);
        assert_eq!(text(&v), r#"{"Init":true}"#);
    }

    #[test]
    fn a_later_array_merges_into_the_structs_already_there() {
        let v = decode(
            r#"{"Mounts":[{"Type":"bind"}],"mounts":[{"Target":"/h"},{"Target":"/i"}]}"#,
            SLICES,
        );
        assert_eq!(
            text(&v),
            r#"{"Mounts":[{"Type":"bind","Target":"/h"},{"Target":"/i"}]}"#
        );
        let v = decode(r#"{"Ulimits":[{"Type":"x"}],"Ulimits":[null]}"#, SLICES);
        assert_eq!(text(&v), r#"{"Ulimits":[null]}"#, "a nil pointer element");
    }

    #[test]
    fn a_longer_array_brings_back_what_a_shorter_one_left_past_the_length() {
        // Go's SetLen re-exposes the backing array; `null` leaves a string be.
        let v = decode(
            r#"{"Binds":["a","b","c"],"Binds":["x"],"Binds":[null,null,null]}"#,
            SLICES,
        );
        assert_eq!(text(&v), r#"{"Binds":["x","b","c"]}"#);
        // An empty array is a fresh slice: nothing survives it.
        let v = decode(
            r#"{"Binds":["a","b"],"Binds":[],"Binds":[null,null]}"#,
            SLICES,
        );
        assert_eq!(text(&v), r#"{"Binds":[null,null]}"#);
        // Growing past the capacity copies the length (4 here), zeroes the rest.
        let v = decode(
            r#"{"Binds":["a","b","c","d"],"Binds":["x"],"Binds":[null,null,null,null,null]}"#,
            SLICES,
        );
        assert_eq!(text(&v), r#"{"Binds":["x","b","c","d",null]}"#);
    }

    #[test]
    fn fixed_arrays_skip_extra_elements_and_zero_missing_ones() {
        let v = decode(r#"{"ConsoleSize":[1,2,3],"consolesize":null}"#, SLICES);
        assert_eq!(text(&v), r#"{"ConsoleSize":[1,2]}"#);
        let v = decode(r#"{"ConsoleSize":[1,2],"ConsoleSize":[7]}"#, SLICES);
        assert_eq!(text(&v), r#"{"ConsoleSize":[7,0]}"#);
    }

    #[test]
    fn negative_zero_is_written_as_zero() {
        assert_eq!(Json::parse(b"[-0, -0.0, 0]").unwrap().to_vec(), b"[0,0,0]");
    }

    #[test]
    fn repeated_maps_merge_with_exact_keys() {
        let v = decode(
            r#"{"HostConfig":{"Labels":{"a":"1","A":"2"},"labels":{"a":"3"}}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Labels":{"a":"3","A":"2"}}}"#);
        // Within one object too: each key where it first came, its last value.
        let v = decode(
            r#"{"HostConfig":{"Labels":{"a":"1","b":"2","a":"3"},"Labels":{"c":"4","b":"5"},"Labels":{}}}"#,
            OUTER,
        );
        assert_eq!(
            text(&v),
            r#"{"HostConfig":{"Labels":{"a":"3","b":"5","c":"4"}}}"#
        );
    }

    #[test]
    fn unknown_keys_are_reported_and_left_out() {
        let body = br#"{"Foo":1,"Image":"x","foo":2,"HostConfig":{"Bar":1}}"#;
        let decoded = decode_struct(Json::parse(body).unwrap(), OUTER).unwrap();
        assert_eq!(decoded.unknown, ["Foo", "foo", "HostConfig.Bar"]);
        assert_eq!(
            text(&Json::Object(decoded.fields)),
            r#"{"Image":"x","HostConfig":{}}"#
        );
    }

    #[test]
    fn wrong_types_are_errors_naming_the_path() {
        let body = br#"{"HostConfig":{"CapAdd":"ALL"}}"#;
        let err = decode_struct(Json::parse(body).unwrap(), OUTER).unwrap_err();
        assert_eq!(
            err.to_string(),
            "HostConfig.CapAdd must be an array, not a string"
        );
        let err = decode_struct(Json::parse(b"[]").unwrap(), OUTER).unwrap_err();
        assert_eq!(err.to_string(), "the body must be an object, not an array");
    }

    #[test]
    fn parse_keeps_every_entry_in_order() {
        let v = Json::parse(br#"{"a":1,"A":2,"a":3}"#).unwrap();
        assert_eq!(text(&v), r#"{"a":1,"A":2,"a":3}"#);
    }

    #[test]
    fn parse_refuses_trailing_values_and_lone_surrogates() {
        assert!(Json::parse(br#"{} {}"#).is_err());
        assert!(Json::parse(br#"{"a":"\ud800"}"#).is_err());
    }

    #[test]
    fn repeated_pointers_merge_and_null_resets_them() {
        const PTR: &[Field] = &[field("P", Kind::Pointer(INNER))];
        let v = decode(r#"{"P":{"Privileged":true},"p":{"CapAdd":[]}}"#, PTR);
        assert_eq!(text(&v), r#"{"P":{"Privileged":true,"CapAdd":[]}}"#);
        let v = decode(
            r#"{"P":{"Privileged":true},"P":null,"P":{"CapAdd":[]}}"#,
            PTR,
        );
        assert_eq!(text(&v), r#"{"P":{"CapAdd":[]}}"#);
        let v = decode(
            r#"{"HostConfig":{"CapAdd":["ALL"]},"HostConfig":null}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"CapAdd":["ALL"]}}"#);
    }

    #[test]
    fn a_map_reset_by_null_starts_afresh() {
        let v = decode(
            r#"{"HostConfig":{"Labels":{"a":"1"},"Labels":null,"Labels":{"b":"2"}}}"#,
            OUTER,
        );
        assert_eq!(text(&v), r#"{"HostConfig":{"Labels":{"b":"2"}}}"#);
    }

    #[test]
    fn unknown_keys_of_a_repeated_struct_are_reported_once_each() {
        let body = br#"{"HostConfig":{"Bar":1},"HostConfig":{"Baz":2},"HostConfig":{}}"#;
        let decoded = decode_struct(Json::parse(body).unwrap(), OUTER).unwrap();
        assert_eq!(decoded.unknown, ["HostConfig.Bar", "HostConfig.Baz"]);
    }

    #[test]
    fn long_map_keys_are_abbreviated_in_paths() {
        const MAPOF: &[Field] = &[field("M", Kind::MapOf(INNER))];
        let key = "k".repeat(1000);
        let body = format!(r#"{{"M":{{"{key}":{{"x":1,"y":2}}}}}}"#);
        let decoded = decode_struct(Json::parse(body.as_bytes()).unwrap(), MAPOF).unwrap();
        let shown = format!(r#"M["{}"…]"#, "k".repeat(64));
        assert_eq!(
            decoded.unknown,
            [format!("{shown}.x"), format!("{shown}.y")]
        );
    }

    #[test]
    fn too_many_values_are_refused_before_the_tree_is_built() {
        let at_limit = format!("[{}]", vec!["0"; MAX_VALUES - 1].join(","));
        assert!(Json::parse(at_limit.as_bytes()).is_ok());
        let over = format!("[{}]", vec!["0"; MAX_VALUES].join(","));
        let (parsed, work) = work::of(|| Json::parse(over.as_bytes()));
        assert!(matches!(parsed, Err(ParseError::TooManyValues)));
        assert!(
            work <= MAX_VALUES as u64 + 1,
            "{work}: only the first pass ran"
        );
        assert_eq!(
            ParseError::TooManyValues.to_string(),
            "the request body has more than 262144 JSON values"
        );
        // Keys are not values; an object's entries count by their values.
        let object = format!(
            "{{{}}}",
            (0..MAX_VALUES - 1)
                .map(|i| format!(r#""{i}":0"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(Json::parse(object.as_bytes()).is_ok());
    }

    /// The issue's three bodies, scaled by `n`.
    mod adversarial {
        pub fn labels(n: usize) -> String {
            let keys: Vec<String> = (0..n).map(|i| format!(r#""{i}":"""#)).collect();
            format!(r#"{{"Image":"busybox","Labels":{{{}}}}}"#, keys.join(","))
        }
        pub fn dns(n: usize) -> String {
            format!(
                r#"{{"Image":"busybox","HostConfig":{{"Dns":[{}]}}{}}}"#,
                vec![r#""8.8.8.8""#; n].join(","),
                r#","HostConfig":{}"#.repeat(n / 6)
            )
        }
        pub fn zeros(n: usize) -> String {
            format!(
                r#"{{"Image":"busybox","Cmd":[{}]}}"#,
                vec!["0"; n].join(",")
            )
        }
    }

    /// The decoder's work (parse included) on a create body through the policy.
    fn create_work(body: &str) -> u64 {
        use crate::proxy::policy::Policy;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let (checked, work) = work::of(|| {
            crate::proxy::check::check_body(
                &Policy::default(),
                crate::proxy::policy::container_create,
                &headers,
                body.as_bytes(),
            )
        });
        checked.expect("the body is allowed");
        work
    }

    #[test]
    fn decoding_work_is_linear_in_the_body() {
        type Shape = fn(usize) -> String;
        let shapes: [(&str, Shape, usize); 3] = [
            ("distinct Labels keys", adversarial::labels, 20_000),
            ("Dns, then repeated HostConfig", adversarial::dns, 24_000),
            ("Cmd of zeros", adversarial::zeros, 50_000),
        ];
        for (name, shape, n) in shapes {
            let (small, large) = (shape(n), shape(2 * n));
            let (once, twice) = (create_work(&small), create_work(&large));
            let ratio = twice as f64 / once as f64;
            assert!(
                ratio <= 2.5,
                "{name}: {once} units of work for {} bytes, {twice} for {}: x{ratio:.2}",
                small.len(),
                large.len()
            );
            // And a few units per byte, not per byte squared.
            assert!(
                twice <= 4 * large.len() as u64,
                "{name}: {twice} units for {} bytes",
                large.len()
            );
        }
    }
}
