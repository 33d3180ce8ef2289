//! The tenants: Heilongjiang Province (230000) and its 13 prefecture-level divisions, by GB/T 2260
//! code (R-TEN-1). Shipped as data (`data/tenants.yaml`, a copy of the spec's list), with the
//! province's county-level divisions (`data/counties.yaml`): counties are no tenants, they are
//! served by their city's (第十五条, R-TEN-2).

use std::collections::BTreeMap;

use std::sync::LazyLock;

use crate::identity::TenantCode;
use serde::{Deserialize, Serialize};

const SHIPPED: &str = include_str!("../data/tenants.yaml");
const COUNTIES: &str = include_str!("../data/counties.yaml");

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

/// A county-level division (县、市、区): no tenant of its own, served by its city's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct County {
    pub code: TenantCode,
    pub name_zh: String,
    /// The city whose tenant serves the county.
    pub city: TenantCode,
}

#[derive(Deserialize)]
struct CountyFile {
    counties: Vec<County>,
}

#[derive(Debug, Clone)]
pub struct Tenants {
    province: TenantCode,
    by_code: BTreeMap<TenantCode, Tenant>,
    counties: BTreeMap<TenantCode, County>,
}

pub static SHIPPED_TENANTS: LazyLock<Tenants> = LazyLock::new(Tenants::shipped);

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
        let counties: CountyFile =
            serde_yaml::from_str(COUNTIES).expect("the shipped county list is valid");
        let counties = counties
            .counties
            .into_iter()
            .map(|county| (county.code.clone(), county))
            .collect();
        Self {
            province,
            by_code,
            counties,
        }
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

    /// The county of `code`, when it is one of the province's county-level divisions.
    pub fn county(&self, code: &TenantCode) -> Option<&County> {
        self.counties.get(code)
    }

    /// The tenant that serves an organization of division `code`: the tenant itself, or a
    /// county's city.
    pub fn serving(&self, code: &TenantCode) -> Option<&Tenant> {
        self.get(code)
            .or_else(|| self.county(code).and_then(|county| self.get(&county.city)))
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

    #[test]
    fn every_county_is_served_by_the_city_its_code_names() {
        let tenants = Tenants::shipped();
        assert!(tenants.counties.len() > 100, "{}", tenants.counties.len());
        for county in tenants.counties.values() {
            let city = tenants.get(&county.city);
            assert!(
                city.is_some_and(|c| c.parent.is_some()),
                "{} ({}): city {} is no city tenant",
                county.code,
                county.name_zh,
                county.city
            );
            assert_eq!(
                county.code.as_str()[..4],
                county.city.as_str()[..4],
                "{} ({}) lies outside its city {}",
                county.code,
                county.name_zh,
                county.city
            );
            assert!(
                tenants.get(&county.code).is_none(),
                "{} is a tenant",
                county.code
            );
        }
        // Every city serves at least one county, and the well-known ones are where they belong.
        for city in tenants.cities() {
            assert!(
                tenants.counties.values().any(|c| c.city == city.code),
                "{} serves no county",
                city.code
            );
        }
        let code = |s: &str| s.parse::<TenantCode>().unwrap();
        assert_eq!(
            tenants.serving(&code("230102")).unwrap().name_zh,
            "哈尔滨市"
        );
        assert_eq!(
            tenants.serving(&code("232701")).unwrap().code,
            code("232700")
        );
        assert_eq!(
            tenants.serving(&code("230100")).unwrap().code,
            code("230100")
        );
        assert!(tenants.serving(&code("220102")).is_none());
    }
}
