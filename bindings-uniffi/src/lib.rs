// placeholder: see the issue for this crate
