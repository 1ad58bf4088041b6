"""Raw -> refined: parsing, row rules, versions, pseudonyms."""
