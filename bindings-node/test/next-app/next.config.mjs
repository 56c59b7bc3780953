// The test app of vlexivo/next: the native addon stays out of the bundle (Node loads it).
export default {
  serverExternalPackages: ['vlexivo'],
  typescript: { ignoreBuildErrors: true },
};
