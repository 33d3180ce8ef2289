-- What requests keeps of products to deliver them where the data is (the products service owns
-- them): each registered product's query and grant, and each buyer's entitlement.

CREATE TABLE delivered_products (
    tenant text NOT NULL,
    product_id text NOT NULL,
    operator text NOT NULL,
    grant_id text NOT NULL,
    form integer NOT NULL,
    query text NOT NULL,
    parameters text NOT NULL,
    refresh_hours integer NOT NULL,
    deliverable boolean NOT NULL,
    PRIMARY KEY (tenant, product_id)
);

CREATE TABLE entitlements (
    tenant text NOT NULL,
    product_id text NOT NULL,
    buyer text NOT NULL,
    calls_left bigint NOT NULL,
    valid_until timestamp,
    PRIMARY KEY (tenant, product_id, buyer)
);

-- Each computation of a dataset product, kept so that a buyer fetches the latest.
CREATE TABLE dataset_versions (
    tenant text NOT NULL,
    product_id text NOT NULL,
    version integer NOT NULL,
    computed_at timestamp NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (tenant, product_id, version)
);

-- When each dataset is computed next, across tenants; names rows, holds none of their content.
CREATE TABLE dataset_refreshes (
    product_id text PRIMARY KEY,
    tenant text NOT NULL,
    due_at timestamp NOT NULL
);

SELECT pdp_isolate_tenant('delivered_products');
SELECT pdp_isolate_tenant('entitlements');
SELECT pdp_isolate_tenant('dataset_versions');
