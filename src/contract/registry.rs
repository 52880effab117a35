//! The contracts of a directory of `*.avsc` files, by name and by fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;

use super::error::ContractError;

/// One Avro schema a message can be held to.
#[derive(Debug)]
pub struct Contract {
    name: String,
    full_name: String,
    fingerprint: u64,
    file: PathBuf,
    /// Self-contained: types from other files are inlined, so the schema decodes alone and
    /// its canonical form (hence fingerprint) is the one writers compute.
    schema: Schema,
    /// Named types inside `schema`, by full name, to follow `Schema::Ref`s.
    named: HashMap<String, Schema>,
    /// What makes a datum worth walking before the decoder sees it.
    shape: Shape,
}

/// Features of a schema that let a small datum cost the decoder much more than its size.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    /// The schema refers back to a type (recursion or reuse): datums can nest without a
    /// bound the schema alone sets.
    refs: bool,
    /// The schema has arrays: items that take no bytes (nulls, empty records, nested
    /// empty arrays) cost the decoder a `Value` each, and apache-avro bounds each array's
    /// own size but not the product of nested ones.
    arrays: bool,
}

impl Contract {
    /// The file stem (`order` for `order.avsc`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema's full name (`com.example.Order`).
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// The CRC-64-AVRO (Rabin) fingerprint of the schema's parsing canonical form, as
    /// Avro single-object encoding writes it (little-endian) after `C3 01`.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The file the contract was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The parsed, self-contained schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub(crate) fn resolve<'a>(&'a self, schema: &'a Schema) -> &'a Schema {
        match schema {
            Schema::Ref { name } => self.named.get(&name.fullname(None)).unwrap_or(schema),
            other => other,
        }
    }

    /// Whether the check walks a datum (depth, item counts) before decoding it.
    pub(crate) fn needs_walk(&self) -> bool {
        self.shape.refs || self.shape.arrays
    }
}

/// Every contract of a directory, addressed by file stem, by full name and by fingerprint.
#[derive(Debug)]
pub struct ContractRegistry {
    contracts: Vec<Arc<Contract>>,
    by_name: BTreeMap<String, usize>,
    by_fingerprint: HashMap<u64, usize>,
}

impl ContractRegistry {
    /// Loads every `*.avsc` file directly in `dir` (not sub-directories). A schema may use
    /// named types defined in another file of the directory. Each file's top level must be
    /// a named type (record, enum or fixed).
    pub fn load(dir: &Path) -> Result<Self, ContractError> {
        let files = read_sources(dir)?;
        if files.is_empty() {
            return Err(ContractError::Empty {
                dir: dir.to_path_buf(),
            });
        }
        let texts: Vec<&str> = files.iter().map(|(_, text)| text.as_str()).collect();
        let schemata = Schema::parse_list(&texts).map_err(|err| blame(&files, err))?;
        let mut registry = Self {
            contracts: Vec::with_capacity(files.len()),
            by_name: BTreeMap::new(),
            by_fingerprint: HashMap::new(),
        };
        for ((path, _), schema) in files.iter().zip(&schemata) {
            let contract = build(path, schema, &schemata)?;
            registry.insert(contract)?;
        }
        Ok(registry)
    }

    fn insert(&mut self, contract: Contract) -> Result<(), ContractError> {
        let index = self.contracts.len();
        for key in [&contract.name, &contract.full_name] {
            match self.by_name.get(key) {
                Some(&other) if other != index => {
                    return Err(ContractError::Duplicate {
                        name: key.clone(),
                        first: self.contracts[other].file.clone(),
                        second: contract.file.clone(),
                    })
                }
                _ => {
                    self.by_name.insert(key.clone(), index);
                }
            }
        }
        // Equal fingerprints mean equal canonical forms, which parse_list already refuses
        // (same full name), so this cannot shadow another contract.
        self.by_fingerprint.insert(contract.fingerprint, index);
        self.contracts.push(Arc::new(contract));
        Ok(())
    }

    /// The contract with this file stem or full name.
    pub fn get(&self, name: &str) -> Option<&Contract> {
        self.get_arc(name).map(|c| &**c)
    }

    pub(crate) fn get_arc(&self, name: &str) -> Option<&Arc<Contract>> {
        self.by_name.get(name).map(|&i| &self.contracts[i])
    }

    /// The contract whose Rabin fingerprint this is.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&Contract> {
        self.by_fingerprint_arc(fingerprint).map(|c| &**c)
    }

    pub(crate) fn by_fingerprint_arc(&self, fingerprint: u64) -> Option<&Arc<Contract>> {
        self.by_fingerprint
            .get(&fingerprint)
            .map(|&i| &self.contracts[i])
    }

    /// Every name the registry answers to (stems and full names), sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The contracts, in file-name order.
    pub fn contracts(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.iter().map(|c| &**c)
    }
}

/// The `*.avsc` files of `dir` with their text, sorted by path so loading is repeatable.
fn read_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>, ContractError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContractError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "avsc") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            Ok((path, text))
        })
        .collect()
}

/// `parse_list` does not say which input failed: parse each file against the others to
/// find one that fails alone, so the error names it.
fn blame(files: &[(PathBuf, String)], err: apache_avro::Error) -> ContractError {
    for (i, (path, text)) in files.iter().enumerate() {
        let others = files
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, (_, t))| t.as_str());
        if let Err(own) = Schema::parse_str_with_list(text, others) {
            return ContractError::Schema {
                file: path.clone(),
                reason: own.to_string(),
            };
        }
    }
    let file = files.first().map(|(p, _)| p.clone()).unwrap_or_default();
    let dir = file.parent().map(Path::to_path_buf).unwrap_or(file);
    ContractError::Schema {
        file: dir,
        reason: err.to_string(),
    }
}

fn build(path: &Path, schema: &Schema, all: &[Schema]) -> Result<Contract, ContractError> {
    let invalid = |err: apache_avro::Error| ContractError::Schema {
        file: path.to_path_buf(),
        reason: err.to_string(),
    };
    let mut own = schema.clone();
    own.denormalize(all).map_err(invalid)?;
    let digest = own.fingerprint::<Rabin>();
    let bytes: [u8; 8] = digest
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| ContractError::Schema {
            file: path.to_path_buf(),
            reason: format!("Rabin fingerprint of {} bytes", digest.bytes.len()),
        })?;
    let full_name = own
        .name()
        .map(|n| n.fullname(None))
        .ok_or_else(|| ContractError::Schema {
            file: path.to_path_buf(),
            reason: "top-level schema must be a named type (record, enum or fixed)".into(),
        })?;
    let mut named = HashMap::new();
    let mut shape = Shape::default();
    collect_named(&own, &mut named, &mut shape);
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Contract {
        name,
        full_name,
        fingerprint: u64::from_le_bytes(bytes),
        file: path.to_path_buf(),
        schema: own,
        named,
        shape,
    })
}

fn collect_named(schema: &Schema, named: &mut HashMap<String, Schema>, shape: &mut Shape) {
    match schema {
        Schema::Ref { .. } => {
            shape.refs = true;
            return;
        }
        _ => {
            if let Some(name) = schema.name() {
                named.insert(name.fullname(None), schema.clone());
            }
        }
    }
    match schema {
        Schema::Array(a) => {
            shape.arrays = true;
            collect_named(&a.items, named, shape);
        }
        Schema::Map(m) => collect_named(&m.types, named, shape),
        Schema::Union(u) => {
            for variant in u.variants() {
                collect_named(variant, named, shape);
            }
        }
        Schema::Record(r) => {
            for field in &r.fields {
                collect_named(&field.schema, named, shape);
            }
        }
        _ => {}
    }
}
