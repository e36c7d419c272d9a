//! Strategic-merge metadata of the built-in Kubernetes types: which lists merge by which keys.

mod custom;
mod table;

pub(crate) use custom::{CustomSchema, Target};

/// A field of a built-in type that matters to strategic merge.
#[derive(Debug)]
pub(crate) struct Field {
    /// JSON field name.
    pub name: &'static str,
    /// Index of its type (or of its element type for lists) in `TYPES`, or `NONE`.
    pub ty: u16,
    /// The field is a list.
    pub list: bool,
    /// `x-kubernetes-patch-strategy` (e.g. `merge`, `merge,retainKeys`, `replace`).
    pub strategy: &'static str,
    /// List map keys or patch merge key, comma separated.
    pub keys: &'static str,
}

/// Fields of one type, sorted by name.
pub(crate) type TypeDef = &'static [Field];

/// Which schema strategic merge consults, kept as kyaml keeps its one process-wide schema: the
/// first kustomization (in load order) naming one (`openapi: {path}` or `{version}`) sets it for
/// the rest of the build; the schema is read at the first merge after that, and a custom
/// schema read after merges had read the built-in one joins it instead of replacing it.
#[derive(Debug, Default)]
pub(crate) struct SchemaState {
    set: std::cell::Cell<bool>,
    custom: std::cell::RefCell<Option<std::sync::Arc<CustomSchema>>>,
    builtin_read: std::cell::Cell<bool>,
}

impl SchemaState {
    /// Whether a kustomization already set the schema.
    pub(crate) fn is_set(&self) -> bool {
        self.set.get()
    }

    /// `openapi: {version: ...}`: the built-in schema (one version is embedded).
    pub(crate) fn set_builtin(&self) {
        self.set.set(true);
    }

    /// `openapi: {path: ...}`.
    pub(crate) fn set_custom(&self, schema: CustomSchema) {
        self.set.set(true);
        *self.custom.borrow_mut() = Some(std::sync::Arc::new(schema));
    }

    /// The schema a merge uses now: the custom one, if set, and whether the built-in types are
    /// known too.
    pub(crate) fn for_merge(&self) -> (Option<std::sync::Arc<CustomSchema>>, bool) {
        let custom = self.custom.borrow().clone();
        if custom.is_none() {
            self.builtin_read.set(true);
        }
        (custom, self.builtin_read.get())
    }
}

/// No type information.
pub(crate) const NONE: u16 = u16::MAX;

/// The type of a built-in kind, when the schema knows it.
pub(crate) fn root_type(group: &str, version: &str, kind: &str) -> Option<u16> {
    table::ROOTS
        .iter()
        .find(|(g, v, k, _)| *g == group && *v == version && *k == kind)
        .map(|(_, _, _, t)| *t)
}

/// The built-in type of a definition name (`io.k8s.api.core.v1.Container`), when it matters to
/// strategic merge.
pub(crate) fn builtin_type(name: &str) -> Option<u16> {
    table::NAMES
        .binary_search(&name)
        .ok()
        .and_then(|i| u16::try_from(i).ok())
}

/// A field of a type.
pub(crate) fn field(ty: u16, name: &str) -> Option<&'static Field> {
    let fields = table::TYPES.get(usize::from(ty))?;
    fields
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .map(|i| &fields[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name() {
        let dep = root_type("apps", "v1", "Deployment").unwrap_or(NONE);
        let spec = field(dep, "spec").map(|f| f.ty).unwrap_or(NONE);
        let tmpl = field(spec, "template").map(|f| f.ty).unwrap_or(NONE);
        let pod = field(tmpl, "spec").map(|f| f.ty).unwrap_or(NONE);
        let containers = field(pod, "containers");
        assert!(containers.is_some_and(|c| c.list && c.strategy == "merge" && c.keys == "name"));
    }

    #[test]
    fn every_builtin_type_is_found_by_its_definition_name() {
        assert_eq!(table::NAMES.len(), table::TYPES.len());
        for (i, name) in table::NAMES.iter().enumerate() {
            assert_eq!(builtin_type(name).map(usize::from), Some(i), "{name}");
        }
        assert_eq!(builtin_type("io.k8s.api.core.v1.Nothing"), None);
    }

    #[test]
    fn a_custom_schema_joins_the_builtin_one_only_after_a_merge_read_it() {
        let custom = || CustomSchema::parse(r#"{"definitions": {}}"#).unwrap_or_default();
        let fresh = SchemaState::default();
        fresh.set_custom(custom());
        assert!(matches!(fresh.for_merge(), (Some(_), false)));

        let read_first = SchemaState::default();
        assert!(matches!(read_first.for_merge(), (None, true)));
        read_first.set_custom(custom());
        assert!(matches!(read_first.for_merge(), (Some(_), true)));
    }

    #[test]
    fn the_first_schema_named_stays() {
        let s = SchemaState::default();
        s.set_builtin();
        assert!(s.is_set());
        assert!(matches!(s.for_merge(), (None, true)));
    }
}
