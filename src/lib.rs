pub mod pb {}
