//! The bus arrivals the load tests load: registered fields and generated CSV.

use pdp_sandbox::load::Field;

pub fn fields() -> Vec<Field> {
    let field = |name: &str, kind: &str, personal| Field {
        name: name.into(),
        kind: kind.into(),
        personal,
    };
    vec![
        field("stop_id", "string", false),
        field("delay", "integer", false),
        field("card_no", "string", true),
    ]
}

pub fn csv(rows: usize, bad_line: Option<usize>) -> String {
    let mut out = String::from("delay,stop_id,card_no\n");
    for i in 0..rows {
        let delay = if Some(i) == bad_line {
            "soon".to_string()
        } else {
            (i % 7).to_string()
        };
        out.push_str(&format!("{delay},S{},C{i:05}\n", i % 3));
    }
    out
}
