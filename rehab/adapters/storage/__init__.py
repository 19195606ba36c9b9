"""MySQL-protocol storage (asyncmy): the schema's migrations and one repository per table group."""
