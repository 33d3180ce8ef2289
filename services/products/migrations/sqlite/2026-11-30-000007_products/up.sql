-- Products, their prices and registrations, the tenant's pricing rules, and what products learns
-- from requests (grants, workspace tables, developers; read models: requests owns them).

CREATE TABLE products (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    operator text NOT NULL,
    developer text NOT NULL,
    state text NOT NULL,
    registration_code text UNIQUE,
    body blob NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX products_tenant_operator ON products (tenant, operator, state);

-- Every price a product has had, in the order set.
CREATE TABLE price_changes (
    tenant text NOT NULL,
    product_id text NOT NULL,
    seq integer NOT NULL,
    body blob NOT NULL,
    PRIMARY KEY (tenant, product_id, seq)
);

CREATE TABLE pricing_rules (
    tenant text PRIMARY KEY,
    body blob NOT NULL
);

-- The last registration number given in a tenant and year: codes are never reused.
CREATE TABLE registration_sequences (
    tenant text NOT NULL,
    year integer NOT NULL,
    last integer NOT NULL,
    PRIMARY KEY (tenant, year)
);

CREATE TABLE grants (
    tenant text NOT NULL,
    grant_id text NOT NULL,
    operator text NOT NULL,
    valid boolean NOT NULL,
    valid_to text NOT NULL,
    PRIMARY KEY (tenant, grant_id)
);

CREATE TABLE workspace_tables (
    tenant text NOT NULL,
    grant_id text NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (tenant, grant_id, name)
);

CREATE TABLE developers (
    tenant text NOT NULL,
    organization text NOT NULL,
    operator text NOT NULL,
    approved boolean NOT NULL,
    PRIMARY KEY (tenant, organization, operator)
);

-- The trades the exchanges reported, once each (verified before they are written).
CREATE TABLE trades (
    tenant text NOT NULL,
    exchange_id text NOT NULL,
    trade_id text NOT NULL,
    product_id text NOT NULL,
    operator text NOT NULL,
    developer text NOT NULL,
    trade_year integer NOT NULL,
    amount_fen bigint NOT NULL,
    record_id text NOT NULL,
    body blob NOT NULL,
    PRIMARY KEY (tenant, exchange_id, trade_id)
);
CREATE INDEX trades_tenant_product ON trades (tenant, product_id);

-- Operators' quarterly reports, every version kept (第二十条(六)).
CREATE TABLE revenue_reports (
    tenant text NOT NULL,
    operator text NOT NULL,
    period text NOT NULL,
    version integer NOT NULL,
    body blob NOT NULL,
    PRIMARY KEY (tenant, operator, period, version)
);

-- What an operator may earn in a year, and whether its trades passed it (told once).
CREATE TABLE revenue_caps (
    tenant text NOT NULL,
    operator text NOT NULL,
    year integer NOT NULL,
    permitted_fen bigint NOT NULL,
    exceeded boolean NOT NULL,
    PRIMARY KEY (tenant, operator, year)
);
