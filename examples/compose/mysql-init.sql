-- The source's second database (MYSQL_DATABASE makes alkemio): Ory Kratos's.
CREATE DATABASE IF NOT EXISTS kratos CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
