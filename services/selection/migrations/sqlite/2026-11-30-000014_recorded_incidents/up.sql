-- The security incidents oversight recorded, by organization: an application fails the
-- condition of 第十二条(三) on one within three years, whatever it declares.
CREATE TABLE recorded_incidents (
    tenant text NOT NULL,
    incident_id text NOT NULL,
    organization text NOT NULL,
    occurred_on text NOT NULL,
    PRIMARY KEY (tenant, incident_id)
);
CREATE INDEX recorded_incidents_by_organization ON recorded_incidents (tenant, organization);

