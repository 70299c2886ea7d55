"""The release portal: a self-hosted web map of a musyq catalog with pixel series, downloads and band math."""
