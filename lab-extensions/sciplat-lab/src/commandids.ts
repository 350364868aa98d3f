/**
 * Stable command ids (browser tests click them: keep in step with docs/lab.md).
 */
export const CommandIDs = {
  openTutorial: 'sciplat:open-tutorial',
  refreshTutorials: 'sciplat:refresh-tutorials',
  tutorialsPlaceholder: 'sciplat:tutorials-placeholder',
  openQueryNotebook: 'sciplat:open-query-notebook',
  openQueryInPortal: 'sciplat:open-query-in-portal',
  refreshQueries: 'sciplat:refresh-queries',
  queriesPlaceholder: 'sciplat:queries-placeholder',
  openPortal: 'sciplat:open-portal',
  sendToPortal: 'sciplat:send-to-portal',
  runWithParameters: 'sciplat:run-with-parameters',
  saveAllAndExit: 'sciplat:save-all-and-exit',
  saveAllExitAndLogout: 'sciplat:save-all-exit-and-logout'
} as const;
