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
