"""The standard library, as .dtl files with {{ }} documentation."""
