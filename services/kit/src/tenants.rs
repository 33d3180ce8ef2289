//! The tenants: Heilongjiang Province (230000) and its 13 prefecture-level divisions, by GB/T 2260
//! code (R-TEN-1). Shipped as data (`data/tenants.yaml`, a copy of the spec's list).

use std::collections::BTreeMap;

use std::sync::LazyLock;

use crate::identity::TenantCode;
use serde::{Deserialize, Serialize};

const SHIPPED: &str = include_str!("../data/tenants.yaml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tenant {
    pub code: TenantCode,
    pub name_zh: String,
    pub name_en: String,
    /// The province for a city; none for the province itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TenantCode>,
}

#[derive(Deserialize)]
struct File {
    province: Tenant,
    divisions: Vec<Tenant>,
}

#[derive(Debug, Clone)]
pub struct Tenants {
    province: TenantCode,
    by_code: BTreeMap<TenantCode, Tenant>,
}

static SHIPPED_TENANTS: LazyLock<Tenants> = LazyLock::new(Tenants::shipped);

/// Whether `code` is the province or one of its cities: an event or a configuration naming
/// anything else is refused.
pub fn is_known(code: &TenantCode) -> bool {
    SHIPPED_TENANTS.get(code).is_some()
}

impl Tenants {
    pub fn shipped() -> Self {
        let file: File = serde_yaml::from_str(SHIPPED).expect("the shipped tenant list is valid");
        let province = file.province.code.clone();
        let mut by_code = BTreeMap::new();
        by_code.insert(province.clone(), file.province);
        for mut city in file.divisions {
            city.parent = Some(province.clone());
            by_code.insert(city.code.clone(), city);
        }
        Self { province, by_code }
    }

    pub fn province(&self) -> &TenantCode {
        &self.province
    }

    pub fn get(&self, code: &TenantCode) -> Option<&Tenant> {
        self.by_code.get(code)
    }

    /// The province first, then the cities by code.
    pub fn all(&self) -> impl Iterator<Item = &Tenant> {
        self.by_code.values()
    }

    pub fn cities(&self) -> impl Iterator<Item = &Tenant> {
        self.by_code.values().filter(|t| t.parent.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_province_and_thirteen_divisions() {
        let tenants = Tenants::shipped();
        assert_eq!(tenants.all().count(), 14);
        assert_eq!(tenants.cities().count(), 13);
        let harbin = tenants.get(&"230100".parse().unwrap()).unwrap();
        assert_eq!(harbin.name_zh, "哈尔滨市");
        assert_eq!(harbin.parent.as_ref(), Some(tenants.province()));
        assert!(tenants.get(&"110000".parse().unwrap()).is_none());
        assert!(is_known(&"230100".parse().unwrap()));
        assert!(!is_known(&"230199".parse().unwrap()));
    }
}
