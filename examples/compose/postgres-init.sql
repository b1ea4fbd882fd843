-- The seed's databases besides alkemio (POSTGRES_DB makes it): Kratos's, which the migration
-- fills, and Hydra's and Synapse's, which those applications migrate themselves when they start.
CREATE DATABASE kratos;
CREATE DATABASE hydra;
CREATE DATABASE synapse;
