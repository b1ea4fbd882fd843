"""3. The Dagster asset graph of the tables: asset keys and specs (the translator), the catalog
asset, the factory of one step per database, and the step that runs the stages for its tables."""
