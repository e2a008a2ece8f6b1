SELECT MAX(data_interval_start) FROM inexchange_report
