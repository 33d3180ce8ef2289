//! Event data as the typed messages of `proto/` (`EventPayload`): written as proto3 JSON with the
//! proto field names and every field present, so that an exchange reads it with the AsyncAPI
//! document alone; read back into the message that its type names, never dug out by field name.

use std::sync::LazyLock;

use pdp_proto::{EventPayload, EventType};
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

use chrono::{DateTime, Utc};

use super::Event;
use crate::identity::TenantCode;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(pdp_proto::FILE_DESCRIPTOR_SET).expect("pdp-proto's descriptors decode")
});

/// Data that is not what its type says: the consumer parks the event rather than apply a guess.
#[derive(Debug, thiserror::Error)]
#[error("event {event_id} ({event_type}): its data is not a {message}: {reason}")]
pub struct PayloadError {
    pub event_id: String,
    pub event_type: String,
    pub message: &'static str,
    pub reason: String,
}

impl PayloadError {
    /// A field the consumer cannot do without came empty.
    pub fn missing<P: EventPayload>(event: &Event, field: &str) -> Self {
        Self {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            message: P::FULL_NAME,
            reason: format!("`{field}` is empty"),
        }
    }
}

/// `payload` as the event's JSON data.
pub fn to_json<P: EventPayload>(payload: &P) -> serde_json::Value {
    let descriptor = POOL
        .get_message_by_name(P::FULL_NAME)
        .expect("event payloads are pdp-proto messages");
    let mut message = DynamicMessage::new(descriptor);
    message
        .transcode_from(payload)
        .expect("a message transcodes into its own descriptor");
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("a message serializes to JSON")
}

impl Event {
    /// A new event of type `ty` about `subject` with `payload` as its data.
    pub fn typed<P: EventPayload>(
        tenant: &TenantCode,
        ty: EventType<P>,
        subject: impl Into<String>,
        time: DateTime<Utc>,
        payload: &P,
    ) -> Self {
        let parts: Vec<&str> = ty.name().splitn(4, '.').collect();
        let [_, service, aggregate, verb] = parts[..] else {
            unreachable!("the build checks every type is pdp.<service>.<aggregate>.<verb>")
        };
        Self::new(
            service,
            tenant,
            aggregate,
            verb,
            subject,
            time,
            to_json(payload),
        )
    }

    /// The event's data as `ty`'s message; `None` when the event is of another type. Fields a
    /// newer release added are ignored (a type's data only grows).
    pub fn data_of<P: EventPayload>(&self, ty: EventType<P>) -> Result<Option<P>, PayloadError> {
        if self.event_type != ty.name() {
            return Ok(None);
        }
        let error = |reason: String| PayloadError {
            event_id: self.id.clone(),
            event_type: self.event_type.clone(),
            message: P::FULL_NAME,
            reason,
        };
        let descriptor = POOL
            .get_message_by_name(P::FULL_NAME)
            .expect("event payloads are pdp-proto messages");
        let options = DeserializeOptions::new().deny_unknown_fields(false);
        let message =
            DynamicMessage::deserialize_with_options(descriptor.clone(), &self.data, &options)
                .map_err(|e| error(e.to_string()))?;
        // Field 1 of every payload is the id of what the event is about: without it a consumer
        // would key a row on nothing.
        if let Some(id) = descriptor.get_field(1)
            && message.get_field(&id).as_str() == Some("")
        {
            return Err(error(format!("`{}` (field 1, the id) is empty", id.name())));
        }
        message
            .transcode_to::<P>()
            .map(Some)
            .map_err(|e| error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp_proto::pdp::planning::v1 as planning;

    fn effective(data: serde_json::Value) -> Event {
        Event::new(
            "planning",
            &"230100".parse().unwrap(),
            "plan",
            "became_effective",
            "plan-1",
            chrono::Utc::now(),
            data,
        )
    }

    #[test]
    fn data_round_trips_with_proto_names_and_every_field() {
        let payload = planning::PlanTookEffect {
            plan_id: "plan-1".into(),
            version: 2,
            mode: planning::AuthorizationMode::Whole as i32,
            resource_ids: vec!["r1".into()],
            ..Default::default()
        };
        let data = to_json(&payload);
        assert_eq!(data["plan_id"], "plan-1");
        assert_eq!(data["mode"], "AUTHORIZATION_MODE_WHOLE");
        assert_eq!(data["approval_document"], "", "defaults are written too");
        let back = effective(data)
            .data_of(planning::PLAN_BECAME_EFFECTIVE)
            .unwrap();
        assert_eq!(back, Some(payload));
    }

    #[test]
    fn another_type_is_none_and_bad_data_is_an_error_naming_the_message() {
        let event = effective(serde_json::json!({"plan_id": "plan-1", "version": "two"}));
        assert_eq!(event.data_of(planning::PLAN_APPROVED).unwrap(), None);
        let err = event
            .data_of(planning::PLAN_BECAME_EFFECTIVE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pdp.planning.v1.PlanTookEffect"), "{err}");
        let err = effective(serde_json::json!({"version": 2}))
            .data_of(planning::PLAN_BECAME_EFFECTIVE)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`plan_id` (field 1, the id) is empty"),
            "{err}"
        );
        let newer = effective(serde_json::json!({"plan_id": "p", "added_later": 1}));
        assert!(
            newer.data_of(planning::PLAN_BECAME_EFFECTIVE).is_ok(),
            "fields a newer release added are ignored"
        );
    }
}
